"""``configure_logging()`` = :func:`resolve_settings` (pure) + :func:`install`.

:func:`resolve_settings` turns arguments, ``AMEBO_LOG_*`` / ``AMEBO_SERVICE_*`` variables and
defaults into a frozen :class:`Settings`, or raises :class:`ValueError` naming the choices.
:func:`install` opens the sink, builds one :class:`~.runtime.Runtime` and puts it in force in a
single assignment, then points both record paths at it: the structlog bound logger and one
root handler for stdlib records.  Calling it again replaces only what an earlier call
installed (or what Amebo 0.9's own ``configure_logging`` installed): other handlers,
pytest's included, stay.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import IO, Any, Final

import structlog

from . import logger as _logger
from .logger import LEVELS, AmeboLogger, Processor
from .record import Builder
from .redaction import Redactor, build_redactor
from .render import ConsoleRenderer, render_json
from .runtime import Runtime, current, swap
from .sink import LineSink
from .stdlib import HANDLER_TAG, EcsHandler, EcsJsonFormatter

__all__ = ["LoggingConfig", "Settings", "configure_logging", "install", "resolve_settings"]

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


@dataclass(frozen=True)
class Settings:
    """Everything :func:`configure_logging` decides, resolved and checked."""

    level: int
    fmt: str  # "json" or "console"
    stream: IO[Any] | None  # where lines go; None: log_file, else stdout
    log_file: str | None
    colors: bool
    service_name: str
    service_version: str
    environment: str
    redactor: Redactor
    processors: tuple[Processor, ...] = ()
    elasticsearch: Any = None


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
    source = "the argument" if level is not None else "AMEBO_LOG_LEVEL"
    if level is None:
        level = _env("AMEBO_LOG_LEVEL") or "info"
    if isinstance(level, int) and not isinstance(level, bool):
        return level
    name = str(level).strip().lower()
    if name.isdigit():  # a logging number, as logging.setLevel accepts
        return int(name)
    name = _LEVEL_ALIASES.get(name, name)
    if name not in LEVELS:
        raise ValueError(
            f"unknown log level {level!r} (from {source}): use one of {', '.join(LEVELS)}, "
            "or a logging number such as 20"
        )
    return LEVELS[name]


def _safe_isatty(stream: IO[Any] | None) -> bool:
    try:
        return stream is not None and bool(stream.isatty())
    except Exception:
        return False


def _resolve_format(fmt: str | None, stream: IO[Any] | None) -> str:
    source = "the argument" if fmt is not None else "AMEBO_LOG_FORMAT"
    if fmt is None:
        fmt = _env("AMEBO_LOG_FORMAT")
    if fmt is None:
        return "console" if _safe_isatty(stream) else "json"
    resolved = _FORMAT_ALIASES.get(fmt.strip().lower())
    if resolved is None:
        raise ValueError(f"unknown log format {fmt!r} (from {source}): use json or console")
    return resolved


def _resolve_redaction(redact: bool | Sequence[str] | None) -> Redactor:
    variable = _env("AMEBO_LOG_REDACT")
    if redact is None and variable is not None and variable.lower() in ("false", "off", "no", "0", "none"):
        return build_redactor(False)
    if redact is None and variable is not None and variable.lower() in ("true", "on", "yes", "1", "default"):
        return build_redactor(None)
    return build_redactor(redact, variable)


def _default_version(service_name: str) -> str:
    """The installed version of the distribution named like the service (``amebo`` for
    Amebo), else ``unknown``: a subscriber named ``billing`` never reports Amebo's version."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(service_name)
    except (PackageNotFoundError, ValueError):
        return "unknown"


def resolve_settings(
    *,
    level: int | str | None = None,
    fmt: str | None = None,
    stream: IO[Any] | None = None,
    service_name: str | None = None,
    service_version: str | None = None,
    environment: str | None = None,
    redact: bool | Sequence[str] | None = None,
    processors: Sequence[Processor] = (),
    elasticsearch: Any = None,
) -> Settings:
    """Arguments, else variables, else defaults, as frozen :class:`Settings`; changes nothing.

    Raises :class:`ValueError` naming the accepted values for an unknown level or format.
    """
    log_file = _env("AMEBO_LOG_FILE") if stream is None else None
    shown = stream if stream is not None else (None if log_file else sys.stdout)
    out_format = _resolve_format(fmt, shown)
    name = service_name or _env("AMEBO_SERVICE_NAME") or "amebo"
    return Settings(
        level=_resolve_level(level),
        fmt=out_format,
        stream=stream,
        log_file=log_file,
        colors=out_format == "console" and _safe_isatty(shown),
        service_name=name,
        service_version=service_version or _env("AMEBO_SERVICE_VERSION") or _default_version(name),
        environment=environment or _env("AMEBO_ENVIRONMENT") or "production",
        redactor=_resolve_redaction(redact),
        processors=tuple(processors),
        elasticsearch=elasticsearch,
    )


def _open_sink(settings: Settings) -> tuple[LineSink, bool]:
    """The sink for *settings* and whether it was opened here (and is closed when replaced)."""
    if settings.stream is not None:
        return LineSink(settings.stream), False
    if settings.log_file is not None:
        try:
            return LineSink.open_file(settings.log_file), True
        except OSError as exc:
            raise OSError(
                exc.errno, f"cannot open AMEBO_LOG_FILE {settings.log_file!r} for appending: {exc.strerror}"
            ) from None
    return LineSink(sys.stdout), False


def _emitter(render: Any, write: Any, tee: Any) -> Any:
    """Render and write one record; with a tee (the Elasticsearch handler), it gets the
    record as a JSON line whatever the terminal shows."""
    if tee is None:

        def emit(record: Mapping[str, Any]) -> None:
            write(render(record))
    elif render is render_json:

        def emit(record: Mapping[str, Any]) -> None:
            line = render_json(record)
            write(line)
            tee(line)
    else:

        def emit(record: Mapping[str, Any]) -> None:
            write(render(record))
            tee(render_json(record))

    return emit


def _is_console_handler(handler: logging.Handler) -> bool:
    """A plain StreamHandler on stdout/stderr: it would print every record a second time."""
    return type(handler) is logging.StreamHandler and getattr(handler, "stream", None) in (
        sys.stdout,
        sys.stderr,
        sys.__stdout__,
        sys.__stderr__,
    )


def install(settings: Settings) -> LoggingConfig:
    """Put *settings* in force for both record paths, in one swap of the runtime."""
    sink, owned = _open_sink(settings)
    render: Any = ConsoleRenderer(colors=settings.colors) if settings.fmt == "console" else render_json
    tee = settings.elasticsearch.submit if settings.elasticsearch is not None else None
    if tee is not None:
        logging.getLogger("elastic_transport").setLevel(logging.WARNING)  # not a line per bulk request
    service = {
        "service.name": settings.service_name,
        "service.version": settings.service_version,
        "service.environment": settings.environment,
    }
    redactor = settings.redactor
    runtime = Runtime(
        level=settings.level,
        builder=Builder(service, redactor.scrub_mapping),
        redactor=redactor,
        emit=_emitter(render, sink.write, tee),
        processors=settings.processors,
        sink=sink,
        owns_sink=owned,
        details={"render": render, "tee": tee},
    )
    old = swap(runtime)
    _logger.set_level(settings.level)
    structlog.configure(
        processors=list(settings.processors),
        wrapper_class=AmeboLogger,
        logger_factory=_logger.logger_factory,
        context_class=dict,
        cache_logger_on_first_use=False,
    )
    _install_root_handler(settings.level, render)
    if old.owns_sink and old.sink is not None and old.sink is not sink:
        old.sink.close()
    return LoggingConfig(
        level=settings.level,
        fmt=settings.fmt,
        target=sink.name,
        service_name=settings.service_name,
        service_version=settings.service_version,
        environment=settings.environment,
        redacted_keys=redactor.keys,
    )


def _install_root_handler(level: int, render: Any) -> None:
    root = logging.getLogger()
    for handler in list(root.handlers):
        if getattr(handler, HANDLER_TAG, False) or _is_console_handler(handler):
            root.removeHandler(handler)
            if isinstance(handler, EcsHandler):
                handler.close()
    root.addHandler(EcsHandler(EcsJsonFormatter(render), level=level))
    root.setLevel(level)
    for name in _FRAMEWORK_LOGGERS:
        framework_logger = logging.getLogger(name)
        for handler in list(framework_logger.handlers):
            if _is_console_handler(handler):
                framework_logger.removeHandler(handler)
        if not framework_logger.handlers:
            framework_logger.propagate = True


def configure_logging(
    *,
    level: int | str | None = None,
    fmt: str | None = None,
    stream: IO[Any] | None = None,
    service_name: str | None = None,
    service_version: str | None = None,
    environment: str | None = None,
    redact: bool | Sequence[str] | None = None,
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
            version of the installed distribution named like the service; else ``unknown``.
        environment: ``service.environment``; else ``AMEBO_ENVIRONMENT``; else ``production``.
        redact: ``False`` turns redaction off; a list changes the default keys
            (``"session_id"`` adds, ``"-cookie"`` removes); else ``AMEBO_LOG_REDACT``, a
            comma-separated list in the same form (or ``false`` for off).
        processors: structlog processors run on every structlog record after its ECS
            fields are in place, before rendering (stdlib records do not pass through them).
        elasticsearch: an :class:`amebo_logging.ElasticsearchHandler`: every record,
            structlog's and the stdlib's, is also queued to it as a JSON line (whatever the
            format of the lines on the stream).

    Returns:
        The settings now in force.
    """
    return install(
        resolve_settings(
            level=level,
            fmt=fmt,
            stream=stream,
            service_name=service_name,
            service_version=service_version,
            environment=environment,
            redact=redact,
            processors=processors,
            elasticsearch=elasticsearch,
        )
    )


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
    from dataclasses import replace

    path = _env("AMEBO_LOG_FILE")
    old = current()
    if path is None or old.sink is None or not old.owns_sink or old.sink.name != path:
        return
    sink = LineSink.open_file(path)
    emit = _emitter(old.details["render"], sink.write, old.details["tee"])
    swap(replace(old, sink=sink, emit=emit))
    old.sink.close()
