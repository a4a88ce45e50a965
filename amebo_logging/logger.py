"""The structlog bound logger: a thin adapter onto the one record builder (:mod:`.record`).

``log.info("event", **fields)`` formats the message (%-style arguments; secrets in it
redacted), has the runtime in force build the record, runs the extra processors
(``configure_logging(processors=...)``) and emits it.  Levels below the configured one are
bound to a method that returns at once.  Every call reads the runtime once, so a logger made
at import time, before configuration, follows it too, and a reconfiguration never splits a
record.
"""

from __future__ import annotations

import logging
import sys
import threading
from collections.abc import Callable, Mapping
from typing import Any

import structlog
from structlog.exceptions import DropEvent

from .correlation import bind_fields
from .processors import protect_header
from .record import fallback
from .redaction import Redactor, may_hold_secrets
from .render import safe_repr, timestamp_now
from .runtime import current

__all__ = ["LEVELS", "AmeboLogger", "bind_context", "get_logger", "logger_factory", "set_level"]

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


class _LoggerName:
    """The name of a logger; one instance per name, shared (structlog's wrapped "logger")."""

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name


_names: dict[str, _LoggerName] = {}
_names_lock = threading.Lock()


def _name(name: str) -> _LoggerName:
    found = _names.get(name)
    if found is None:
        with _names_lock:
            found = _names.setdefault(name, _LoggerName(name))
    return found


def _format_message(event: Any, args: tuple[Any, ...], redactor: Redactor) -> Any:
    if args:
        try:
            event = event % args
        except Exception:
            event = f"{event} {safe_repr(args)}"
    if type(event) is str and may_hold_secrets(event):
        event = redactor.scrub_text(event)
    return event


def _make_method(level_name: str, *, exception: bool = False) -> Callable[..., None]:
    def method(self: AmeboLogger, event: Any = None, *args: Any, **kw: Any) -> None:
        rt = current()
        try:
            if args or type(event) is not str or may_hold_secrets(event):
                event = _format_message(event, args, rt.redactor)
            exc = kw.pop("exc_info") if "exc_info" in kw else exception
            ed = rt.builder.build(level_name, self._logger.name, event, timestamp_now(), self._context, kw, exc)
            for proc in rt.processors:
                ed = proc(self, level_name, ed)
        except DropEvent:
            return
        except Exception as err:
            ed = fallback(level_name, self._logger.name, event, timestamp_now(), err)
        rt.emit(ed)

    name = "exception" if exception else level_name
    method.__name__ = name
    method.__qualname__ = f"AmeboLogger.{name}"
    method.__doc__ = f"Log *event* at {level_name.upper()} with *fields*; %-style *args* format *event*." + (
        " Adds the exception being handled." if exception else ""
    )
    return method


def _nop(self: Any, event: Any = None, *args: Any, **kw: Any) -> None:
    return None


def _scrub(fields: Mapping[str, Any]) -> dict[str, Any]:
    return dict(current().redactor.scrub_mapping(protect_header(fields)))


def bind_context(**fields: Any) -> None:
    """Bind *fields* to every record made in the current context from now on.

    Values are redacted when bound, with the same rules as records.  Dotted names need the
    ``**{"user.id": 42}`` form.
    """
    bind_fields(_scrub(fields))


class AmeboLogger(structlog.BoundLoggerBase):
    """A structlog bound logger that writes ECS JSON records (see the module docstring).

    Use :func:`amebo_logging.get_logger` to get one.  ``bind()``, ``unbind()``,
    ``try_unbind()`` and ``new()`` work as in structlog; bound values are redacted when
    bound.  Level methods: ``debug``, ``info``, ``warning`` (``warn``), ``error`` (``err``),
    ``critical`` (``fatal``), ``exception`` (error with the current traceback), ``log(level, ...)``.
    """

    _logger: _LoggerName

    def bind(self, **new_values: Any) -> AmeboLogger:
        return self.__class__(self._logger, self._processors, {**self._context, **_scrub(new_values)})

    def new(self, **new_values: Any) -> AmeboLogger:
        return self.__class__(self._logger, self._processors, _scrub(new_values))

    @property
    def name(self) -> str:
        """The logger's name, written as ``log.logger``."""
        return self._logger.name

    def is_enabled_for(self, level: int) -> bool:
        """Whether a record at *level* would be written."""
        return level >= current().level

    def get_effective_level(self) -> int:
        """The configured minimum level."""
        return current().level

    def log(self, level: int | str, event: Any = None, *args: Any, **kw: Any) -> None:
        """Log at *level*, a number (``logging.INFO``) or a name (``"info"``)."""
        name = level.lower() if isinstance(level, str) else _NAME_OF.get(level)
        if name == "warn":
            name = "warning"
        if name not in LEVELS:  # an odd number: round down to a known level
            number = level if isinstance(level, int) else logging.INFO
            name = _NAME_OF[max((n for n in _NAME_OF if n <= number), default=logging.DEBUG)]
        getattr(self, str(name))(event, *args, **kw)

    # Replaced by set_level(); these are the unconfigured defaults (INFO and above).
    debug = info = warning = warn = error = err = critical = fatal = exception = msg = _nop


def set_level(min_level: int) -> None:
    """Bind every level method: a real one from *min_level* up, one that returns at once below."""
    for number, name in _NAME_OF.items():
        setattr(AmeboLogger, name, _make_method(name) if number >= min_level else _nop)
    AmeboLogger.warn = AmeboLogger.warning
    AmeboLogger.err = AmeboLogger.error
    AmeboLogger.fatal = AmeboLogger.critical
    AmeboLogger.msg = AmeboLogger.info
    AmeboLogger.exception = _make_method("error", exception=True) if min_level <= logging.ERROR else _nop


set_level(logging.INFO)


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
    return AmeboLogger(_name(str(name)), (), _scrub(initial_fields))
