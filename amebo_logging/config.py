"""``configure_logging()``: resolve the settings and install both record paths.

Settings come from the arguments, else the ``AMEBO_LOG_*`` / ``AMEBO_SERVICE_*`` variables,
else defaults.  Calling it again replaces only what an earlier call installed (or what
Amebo 0.9's own ``configure_logging`` installed): other handlers, pytest's included, stay.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import IO, Any, Final

import structlog

from . import logger as _logger
from .logger import LEVELS, AmeboLogger, Processor
from .redaction import build_redactor, set_redactor
from .render import ConsoleRenderer, render_json
from .sink import LineSink
from .stdlib import HANDLER_TAG, EcsHandler, EcsJsonFormatter

__all__ = ["LoggingConfig", "configure_logging"]

FORMATS: Final = ("json", "console")
_FORMAT_ALIASES: Final = {"json": "json", "console": "console", "text": "console"}
_LEVEL_ALIASES: Final = {"warn": "warning", "fatal": "critical"}

#: Loggers that come with handlers of their own (uvicorn's dictConfig, gunicorn): their
#: console handlers are removed so that their records reach the root handler, once.
_FRAMEWORK_LOGGERS: Final = (
    "uvicorn",
    "uvicorn.error",
    "uvicorn.access",
    "uvicorn.asgi",
    "gunicorn",
    "gunicorn.error",
    "gunicorn.access",
)

_installed_sink: LineSink | None = None
_also_to: Any = None  # ElasticsearchHandler.submit, when configure_logging(elasticsearch=...)


@dataclass(frozen=True)
class LoggingConfig:
    """What :func:`configure_logging` put in force."""

    level: int
    fmt: str
    target: str
    service_name: str
    service_version: str
    environment: str
    redacted_keys: frozenset[str]


def _env(name: str) -> str | None:
    value = os.environ.get(name, "").strip()
    return value or None


def _resolve_level(level: int | str | None) -> int:
    if level is None:
        level = _env("AMEBO_LOG_LEVEL") or "info"
    if isinstance(level, int) and not isinstance(level, bool):
        return level
    name = str(level).strip().lower()
    name = _LEVEL_ALIASES.get(name, name)
    if name not in LEVELS:
        raise ValueError(
            f"unknown log level {level!r} (from the argument or AMEBO_LOG_LEVEL): use one of {', '.join(LEVELS)}"
        )
    return LEVELS[name]


def _resolve_format(fmt: str | None, stream: IO[Any] | None) -> str:
    if fmt is None:
        fmt = _env("AMEBO_LOG_FORMAT")
    if fmt is None:
        try:
            tty = stream is not None and stream.isatty()
        except Exception:
            tty = False
        return "console" if tty else "json"
    resolved = _FORMAT_ALIASES.get(fmt.strip().lower())
    if resolved is None:
        raise ValueError(f"unknown log format {fmt!r} (from the argument or AMEBO_LOG_FORMAT): use json or console")
    return resolved


def _default_version(service_name: str) -> str:
    """The installed version of the distribution named like the service (``amebo`` for
    Amebo), else ``unknown``: a subscriber named ``billing`` never reports Amebo's version."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(service_name)
    except (PackageNotFoundError, ValueError):
        return "unknown"


def _open_sink(stream: IO[Any] | None) -> tuple[LineSink, IO[Any] | None]:
    """The sink for *stream*, else ``AMEBO_LOG_FILE``, else stdout; and the stream used."""
    if stream is not None:
        return LineSink(stream), stream
    path = _env("AMEBO_LOG_FILE")
    if path is not None:
        try:
            return LineSink.open_file(path), None
        except OSError as exc:
            raise OSError(exc.errno, f"cannot open AMEBO_LOG_FILE {path!r} for appending: {exc.strerror}") from None
    return LineSink(sys.stdout), sys.stdout


def _is_console_handler(handler: logging.Handler) -> bool:
    """A plain StreamHandler on stdout/stderr: it would print every record a second time."""
    return type(handler) is logging.StreamHandler and getattr(handler, "stream", None) in (
        sys.stdout,
        sys.stderr,
        sys.__stdout__,
        sys.__stderr__,
    )


def configure_logging(
    *,
    level: int | str | None = None,
    fmt: str | None = None,
    stream: IO[Any] | None = None,
    service_name: str | None = None,
    service_version: str | None = None,
    environment: str | None = None,
    redact: bool | list[str] | tuple[str, ...] | None = None,
    processors: Sequence[Processor] = (),
    elasticsearch: Any = None,
) -> LoggingConfig:
    """Make every record, structlog's and the stdlib's, one ECS JSON line (or a console line).

    Args:
        level: ``"debug"`` ... ``"critical"`` or a ``logging`` number; else ``AMEBO_LOG_LEVEL``;
            else ``info``.  An unknown name raises :class:`ValueError`.
        fmt: ``"json"`` or ``"console"`` (``"text"`` is accepted, as Amebo 0.9 did); else
            ``AMEBO_LOG_FORMAT``; else JSON, or console when the stream is a terminal.
        stream: where lines go; else the file named by ``AMEBO_LOG_FILE`` (appended to);
            else stdout.
        service_name: ``service.name``; else ``AMEBO_SERVICE_NAME``; else ``amebo``.
        service_version: ``service.version``; else ``AMEBO_SERVICE_VERSION``; else the
            installed ``amebo`` package's version; else ``unknown``.
        environment: ``service.environment``; else ``AMEBO_ENVIRONMENT``; else ``production``.
        redact: ``False`` turns redaction off; a list changes the default keys
            (``"session_id"`` adds, ``"-cookie"`` removes); else ``AMEBO_LOG_REDACT``, a
            comma-separated list in the same form.
        processors: structlog processors run on every structlog record after its ECS
            fields are in place, before rendering (stdlib records do not pass through them).
        elasticsearch: an :class:`amebo_logging.ElasticsearchHandler`: every JSON line,
            structlog's and the stdlib's, is also queued to it (needs ``fmt="json"``).

    Returns:
        The settings now in force.
    """
    global _installed_sink
    min_level = _resolve_level(level)
    sink, used_stream = _open_sink(stream)
    try:
        out_format = _resolve_format(fmt, used_stream)
    except ValueError:
        sink.close()
        raise
    colors = out_format == "console" and used_stream is not None and _safe_isatty(used_stream)
    render = ConsoleRenderer(colors=colors) if out_format == "console" else render_json
    red = build_redactor(redact, _env("AMEBO_LOG_REDACT"))
    name = service_name or _env("AMEBO_SERVICE_NAME") or "amebo"
    service = {
        "service.name": name,
        "service.version": service_version or _env("AMEBO_SERVICE_VERSION") or _default_version(name),
        "service.environment": environment or _env("AMEBO_ENVIRONMENT") or "production",
    }

    global _also_to
    if elasticsearch is not None:
        if out_format != "json":
            sink.close()
            raise ValueError("elasticsearch= ships JSON records: use fmt='json' (or unset AMEBO_LOG_FORMAT)")
        logging.getLogger("elastic_transport").setLevel(logging.WARNING)  # not a line per bulk request
    _also_to = elasticsearch.submit if elasticsearch is not None else None
    write = _writer(sink)
    set_redactor(red)
    _logger.install(level=min_level, render=render, write=write, processors=processors, service=service)
    structlog.configure(
        processors=list(processors),
        wrapper_class=AmeboLogger,
        logger_factory=_logger.logger_factory,
        context_class=dict,
        cache_logger_on_first_use=False,
    )

    root = logging.getLogger()
    for handler in list(root.handlers):
        if getattr(handler, HANDLER_TAG, False) or _is_console_handler(handler):
            root.removeHandler(handler)
            if isinstance(handler, EcsHandler):
                handler.close()
    root.addHandler(EcsHandler(EcsJsonFormatter(render), level=min_level))
    root.setLevel(min_level)
    for name in _FRAMEWORK_LOGGERS:
        framework_logger = logging.getLogger(name)
        for handler in list(framework_logger.handlers):
            if _is_console_handler(handler):
                framework_logger.removeHandler(handler)
        if not framework_logger.handlers:
            framework_logger.propagate = True

    if _installed_sink is not None and _installed_sink is not sink:
        _installed_sink.close()
    _installed_sink = sink
    return LoggingConfig(
        level=min_level,
        fmt=out_format,
        target=sink.name,
        service_name=service["service.name"],
        service_version=service["service.version"],
        environment=service["service.environment"],
        redacted_keys=red.keys,
    )


def _writer(sink: LineSink) -> Any:
    """The function every rendered line goes through: the sink, and the in-process
    Elasticsearch handler too when one was given."""
    if _also_to is None:
        return sink.write
    first, second = sink.write, _also_to

    def write_both(line: bytes) -> None:
        first(line)
        second(line)

    return write_both


def _safe_isatty(stream: IO[Any]) -> bool:
    try:
        return bool(stream.isatty())
    except Exception:
        return False


def uvicorn_log_config() -> dict[str, Any]:
    """A ``log_config`` for ``uvicorn.run()`` that leaves records to configure_logging().

    uvicorn applies its own ``log_config`` when it starts, adding console handlers after
    ``configure_logging()`` ran.  Pass this (or ``log_config=None``) instead::

        configure_logging()
        uvicorn.run(app, port=3310, log_config=uvicorn_log_config())
    """
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "loggers": {name: {"handlers": [], "propagate": True} for name in _FRAMEWORK_LOGGERS[:4]},
    }


def reopen_log_file() -> None:
    """Reopen ``AMEBO_LOG_FILE`` after it was rotated by rename (call it on SIGHUP).

    Rotation by ``copytruncate`` needs no reopen: the file is appended to at its new end.
    Does nothing when the records do not go to ``AMEBO_LOG_FILE``.
    """
    global _installed_sink
    path = _env("AMEBO_LOG_FILE")
    old = _installed_sink
    if path is None or old is None or old.name != path:
        return
    new = LineSink.open_file(path)
    _logger.install_sink(_writer(new))
    _installed_sink = new
    old.close()
