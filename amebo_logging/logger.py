"""The bound logger: turns ``log.info("event", **fields)`` into one ECS record, fast.

A call builds the event dict in the ECS logging order, then runs the processors and writes
the rendered line::

    {"@timestamp", "log.level", "message"}      the header
    + ecs.version, log.logger, service.*, process.pid    constant per logger
    + correlation_id, trace.id, span.id, bind_context() fields   the current context
    + fields bound with .bind()                  already redacted when bound
    + the call's own fields                      redacted here
    exc_info -> error.type, error.message, error.stack_trace
    -> your processors (configure_logging(processors=...)) -> renderer -> sink

Levels below the configured one are bound to a method that returns at once.  Everything
``configure_logging()`` decides (level, processors, renderer, sink, service fields) is held
here as module state, so loggers made at import time, before configuration, follow it too.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import structlog
from structlog.exceptions import DropEvent

from . import redaction
from .correlation import _CONTEXT, legacy_request_id
from .processors import error_fields, protect_header
from .redaction import may_hold_secrets, scrub_text
from .render import render_json, safe_repr, timestamp_now
from .schema import ECS_VERSION

__all__ = ["LEVELS", "AmeboLogger", "get_logger", "logger_factory"]

#: Accepted level names and their numbers.
LEVELS: Mapping[str, int] = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
    "critical": logging.CRITICAL,
}
_NAME_OF: dict[int, str] = {v: k for k, v in LEVELS.items()}

Processor = Callable[[Any, str, Any], Any]

# --- module state, set by install() -------------------------------------------------------
_render: Callable[[Mapping[str, Any]], bytes] = render_json
_write: Callable[[bytes], None] = lambda line: None  # noqa: E731 - silent until configured
_processors: tuple[Processor, ...] = ()
_scrub: Callable[[Mapping[str, Any]], Mapping[str, Any]] = redaction.redactor().scrub_mapping
_min_level: int = logging.INFO
_service: dict[str, Any] = {
    "service.name": "amebo",
    "service.version": "unknown",
    "service.environment": "production",
}


class _LoggerName:
    """The name of a logger and its constant fields; one instance per name, shared."""

    __slots__ = ("name", "static", "templates")

    def __init__(self, name: str) -> None:
        self.name = name
        self.static: dict[str, Any] = {}
        self.templates: dict[str, dict[str, Any]] = {}
        self.refresh()

    def refresh(self) -> None:
        self.static = {"ecs.version": ECS_VERSION, "log.logger": self.name, **_service, "process.pid": os.getpid()}
        # Per level, the header and constant fields in record order: a call copies one and
        # fills in the time and message, which is cheaper than building the dict anew.
        self.templates = {
            level: {"@timestamp": None, "log.level": level, "message": None, **self.static} for level in LEVELS
        }


_names: dict[str, _LoggerName] = {}
_names_lock = threading.Lock()


def _name(name: str) -> _LoggerName:
    found = _names.get(name)
    if found is None:
        with _names_lock:
            found = _names.setdefault(name, _LoggerName(name))
    return found


def _refresh_names() -> None:
    for entry in list(_names.values()):
        entry.refresh()


# The pid changes in a forked worker (gunicorn, multiprocessing): records must say so.
os.register_at_fork(after_in_child=_refresh_names)


def _fallback_record(level_name: str, event: Any, exc: BaseException) -> bytes:
    """A minimal record saying why a record could not be made; used instead of raising."""
    return render_json(
        {
            "@timestamp": timestamp_now(),
            "log.level": level_name,
            "message": event if isinstance(event, str) else safe_repr(event),
            "error.type": "amebo_logging.RecordError",
            "error.message": f"this record could not be built: {type(exc).__name__}: {safe_repr(exc)}",
        }
    )


def _format_message(event: Any, args: tuple[Any, ...]) -> Any:
    if args:
        try:
            event = event % args
        except Exception:
            event = f"{event} {safe_repr(args)}"
    if type(event) is str and may_hold_secrets(event):
        event = scrub_text(event)
    return event


def _make_method(level_name: str, *, exception: bool = False) -> Callable[..., None]:
    def method(self: AmeboLogger, event: Any = None, *args: Any, **kw: Any) -> None:
        try:
            if args or type(event) is not str or may_hold_secrets(event):
                event = _format_message(event, args)
            if exception:
                kw.setdefault("exc_info", True)
            ed = self._logger.templates[level_name].copy()
            ed["@timestamp"] = timestamp_now()
            ed["message"] = event
            ctx = _CONTEXT.get()
            if ctx is not None:
                ed.update(ctx)
            if ctx is None or "correlation_id" not in ctx:
                legacy = legacy_request_id()
                if legacy is not None:
                    ed["correlation_id"] = legacy
            if self._context:
                ed.update(self._context)
            if kw:
                ed.update(_scrub(protect_header(kw)))
            if "exc_info" in ed:
                ed.update(error_fields(ed.pop("exc_info")))
            for proc in _processors:
                ed = proc(self, level_name, ed)
            line = _render(ed)
        except DropEvent:
            return
        except Exception as exc:
            line = _fallback_record(level_name, event, exc)
        _write(line)
        return

    name = "exception" if exception else level_name
    method.__name__ = name
    method.__qualname__ = f"AmeboLogger.{name}"
    method.__doc__ = f"Log *event* at {level_name.upper()} with *fields*; %-style *args* format *event*." + (
        " Adds the exception being handled." if exception else ""
    )
    return method


def _nop(self: Any, event: Any = None, *args: Any, **kw: Any) -> None:
    return None


class AmeboLogger(structlog.BoundLoggerBase):
    """A structlog bound logger that writes ECS JSON records (see the module docstring).

    Use :func:`amebo_logging.get_logger` to get one.  ``bind()``, ``unbind()``,
    ``try_unbind()`` and ``new()`` work as in structlog; bound values are redacted when
    bound.  Level methods: ``debug``, ``info``, ``warning`` (``warn``), ``error`` (``err``),
    ``critical`` (``fatal``), ``exception`` (error with the current traceback), ``log(level, ...)``.
    """

    _logger: _LoggerName

    def bind(self, **new_values: Any) -> AmeboLogger:
        return self.__class__(self._logger, self._processors, {**self._context, **_scrub(protect_header(new_values))})

    def new(self, **new_values: Any) -> AmeboLogger:
        return self.__class__(self._logger, self._processors, dict(_scrub(protect_header(new_values))))

    @property
    def name(self) -> str:
        """The logger's name, written as ``log.logger``."""
        return self._logger.name

    def is_enabled_for(self, level: int) -> bool:
        """Whether a record at *level* would be written."""
        return level >= _min_level

    def get_effective_level(self) -> int:
        """The configured minimum level."""
        return _min_level

    def log(self, level: int | str, event: Any = None, *args: Any, **kw: Any) -> None:
        """Log at *level*, a number (``logging.INFO``) or a name (``"info"``)."""
        name = level.lower() if isinstance(level, str) else _NAME_OF.get(level)
        if name == "warn":
            name = "warning"
        if name not in LEVELS:  # an odd number: round down to a known level
            number = level if isinstance(level, int) else logging.INFO
            name = _NAME_OF[max((n for n in _NAME_OF if n <= number), default=logging.DEBUG)]
        getattr(self, str(name))(event, *args, **kw)

    # Replaced by _set_level(); these are the unconfigured defaults (INFO and above).
    debug = info = warning = warn = error = err = critical = fatal = exception = msg = _nop


def _set_level(min_level: int) -> None:
    global _min_level
    _min_level = min_level
    for number, name in _NAME_OF.items():
        active = number >= min_level
        method = _make_method(name) if active else _nop
        setattr(AmeboLogger, name, method)
    AmeboLogger.warn = AmeboLogger.warning
    AmeboLogger.err = AmeboLogger.error
    AmeboLogger.fatal = AmeboLogger.critical
    AmeboLogger.msg = AmeboLogger.info
    AmeboLogger.exception = _make_method("error", exception=True) if min_level <= logging.ERROR else _nop


_set_level(logging.INFO)


def install(
    *,
    level: int,
    render: Callable[[Mapping[str, Any]], bytes],
    write: Callable[[bytes], None],
    processors: Iterable[Processor],
    service: Mapping[str, Any],
) -> None:
    """Put a configuration in force for every logger, existing and future."""
    global _render, _write, _processors, _scrub, _service
    _render = render
    _write = write
    _processors = tuple(processors)
    _scrub = redaction.redactor().scrub_mapping
    _service = dict(service)
    _refresh_names()
    _set_level(level)


def install_sink(write: Callable[[bytes], None]) -> None:
    """Send lines to *write* from now on, keeping the rest of the configuration."""
    global _write
    _write = write


def write_line(line: bytes) -> None:
    """Write a rendered line through the sink in force (used by the stdlib bridge)."""
    _write(line)


def logger_factory(*args: Any) -> _LoggerName:
    """structlog ``logger_factory``: ``structlog.get_logger("name")`` names the logger."""
    return _name(args[0] if args and isinstance(args[0], str) else "root")


def get_logger(name: str | None = None, **initial_fields: Any) -> AmeboLogger:
    """A ready logger whose records carry ``log.logger`` = *name*.

    *name* defaults to the calling module's ``__name__``.  *initial_fields* are bound to the
    logger (and redacted).  Safe to call at import time, before ``configure_logging()``.
    """
    if name is None:
        frame = sys._getframe(1)
        name = frame.f_globals.get("__name__", "root")
    return AmeboLogger(_name(name), _processors, dict(_scrub(protect_header(initial_fields))))
