"""The stdlib bridge: ``logging`` records in the same ECS shape as structlog's.

:class:`EcsJsonFormatter` is a python-json-logger formatter (a ``BaseJsonFormatter``) and a thin
adapter onto the one record builder (:mod:`.record`): it maps a ``LogRecord`` (its message,
level, logger name, time, ``extra`` fields and exception) onto it.  What is particular to the
records Amebo's stack writes is a small table, not code paths: Amebo 0.9's access extras
(``method``, ``path``, ``status``, ``duration_ms``, ``client_ip``) and uvicorn's access-line
arguments become ECS fields; uvicorn's ``color_message`` and Amebo's ``request_id`` attribute
are not fields.

:class:`EcsHandler` emits each record through the runtime in force: one ``write()`` per line.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any, Final

from pythonjsonlogger.core import RESERVED_ATTRS, BaseJsonFormatter

from .asgi import QUIET_PATHS, client_fields
from .record import LEVEL_NAMES, fallback
from .redaction import may_hold_secrets
from .render import format_timestamp, render_json
from .runtime import Runtime, current

__all__ = ["HANDLER_TAG", "EcsHandler", "EcsJsonFormatter"]

#: The attribute that marks a root handler as installed by configure_logging().  It is the
#: tag Amebo 0.9's own ``amebo.utils.logs`` uses, so each replaces the other's handler.
HANDLER_TAG: Final = "_amebo_log_handler"

#: Record attributes that are never fields: the LogRecord's own, what formatters add, and
#: the particular ones named above.
_RESERVED: Final = frozenset(RESERVED_ATTRS) | {"message", "asctime", "color_message", "request_id", "taskName"}
#: How many attributes a LogRecord made without ``extra`` has: more means extra fields.
_PLAIN: Final = len(logging.LogRecord("n", 20, "p", 1, "m", None, None).__dict__)
_ACCESS_SIGNATURE: Final = frozenset({"method", "path", "status"})


def _access_fields(extra: dict[str, Any]) -> dict[str, Any]:
    """Amebo 0.9's access-log extras as ECS fields (other extras are kept as they are)."""
    out: dict[str, Any] = {}
    method, path = extra.pop("method"), extra.pop("path")
    status, duration_ms = extra.pop("status"), extra.pop("duration_ms", None)
    client_ip = extra.pop("client_ip", None)
    out["http.request.method"] = str(method).upper()
    out["url.path"] = str(path).split("?", 1)[0]
    if isinstance(status, int):
        out["http.response.status_code"] = status
    if isinstance(duration_ms, int | float):
        out["event.duration"] = int(duration_ms * 1_000_000)
    if client_ip:
        # heaven hands Amebo a Lookup object ({address, port}), not a string
        out.update(client_fields(getattr(client_ip, "address", client_ip)))
    out.update(extra)
    return out


def _uvicorn_access_fields(args: Any) -> dict[str, Any]:
    """uvicorn.access's ``%s - "%s %s HTTP/%s" %d`` arguments as ECS fields."""
    client, method, path, version, status = args
    host = client.rsplit(":", 1)[0] if isinstance(client, str) else None
    fields: dict[str, Any] = {
        "http.request.method": method,
        "url.path": str(path).split("?", 1)[0],
        "http.version": str(version),
    }
    if isinstance(status, int):
        fields["http.response.status_code"] = status
    if host:
        fields.update(client_fields(host))
    return fields


#: The particular records, by logger name: fields from the record's arguments, when it has no
#: extra fields of its own.  (Amebo's access records are known by their extras instead:
#: ``method``, ``path``, ``status``, whatever the logger.)
_BY_LOGGER: Final[Mapping[str, Callable[[logging.LogRecord], dict[str, Any] | None]]] = {
    "uvicorn.access": lambda record: (
        _uvicorn_access_fields(record.args) if isinstance(record.args, tuple) and len(record.args) == 5 else None
    ),
}


class EcsJsonFormatter(BaseJsonFormatter):
    """python-json-logger formatter giving stdlib records the toolkit's ECS record shape.

    ``format()`` returns the JSON text (no newline), as ``logging.Formatter`` does;
    :meth:`format_bytes` returns the whole line.  *render* turns the record into a line
    (JSON by default; the console renderer for ``fmt="console"``).
    """

    def __init__(self, render: Callable[[Mapping[str, Any]], bytes] = render_json) -> None:
        super().__init__()
        self.render = render

    def event_dict(self, record: logging.LogRecord, rt: Runtime | None = None) -> dict[str, Any]:
        """The ECS record of *record*, built by the runtime in force (or *rt*)."""
        if rt is None:
            rt = current()
        msg = record.msg
        extra: dict[str, Any] | None = None
        request_id = None
        if type(msg) is dict:  # python-json-logger's logger.info({"key": value}) form
            extra = dict(msg)
            message: Any = extra.pop("message" if "message" in extra else "event", "")
        else:
            try:
                message = record.getMessage()
            except Exception as exc:
                message = f"{msg} {record.args!r} (could not be formatted: {exc})"
            if may_hold_secrets(message):
                message = rt.redactor.scrub_text(message)
        attrs = record.__dict__
        if len(attrs) > _PLAIN:  # extra fields (or attributes Amebo's filter or a formatter added)
            request_id = attrs.get("request_id")
            found = {k: v for k, v in attrs.items() if k not in _RESERVED and k[0] != "_"}
            if found:
                extra = {**found, **extra} if extra else found
        if extra is not None:
            if extra.keys() >= _ACCESS_SIGNATURE:
                extra, message = _access_fields(extra), "http_request"
        else:
            particular = _BY_LOGGER.get(record.name)
            if particular is not None:
                extra = particular(record)
        exc_info = record.exc_info
        ed = rt.builder.build(  # positional: this is the hot path
            LEVEL_NAMES.get(record.levelno) or record.levelname.lower(),
            record.name,
            message,
            format_timestamp(record.created),
            None,
            extra,
            exc_info,
            request_id,
        )
        if not exc_info and record.exc_text:
            ed["error.stack_trace"] = record.exc_text
        if record.stack_info and "error.stack_trace" not in ed:
            ed["error.stack_trace"] = record.stack_info
        return ed

    def safe_event_dict(self, record: logging.LogRecord, rt: Runtime) -> dict[str, Any]:
        """:meth:`event_dict`, or a record saying why it could not be built.  Never raises."""
        try:
            return self.event_dict(record, rt)
        except Exception as exc:
            return fallback(
                LEVEL_NAMES.get(record.levelno, "error"),
                record.name,
                str(record.msg),
                format_timestamp(record.created),
                exc,
            )

    def format_bytes(self, record: logging.LogRecord) -> bytes:
        """*record* as one complete line (JSON and a newline, or a console line).  Never raises."""
        return self.render(self.safe_event_dict(record, current()))

    def format(self, record: logging.LogRecord) -> str:
        return self.format_bytes(record).decode("utf-8").rstrip("\n")

    def jsonify_log_record(self, log_data: Any) -> str:
        return render_json(log_data).decode("utf-8").rstrip("\n")


def _is_probe(record: logging.LogRecord) -> bool:
    args = record.args
    return isinstance(args, tuple) and len(args) == 5 and str(args[2]).split("?", 1)[0] in QUIET_PATHS


class EcsHandler(logging.Handler):
    """A root handler emitting each record through the runtime in force.

    Writes are whole-line and need no handler lock; a failed write is counted, never raised.
    """

    def __init__(self, formatter: EcsJsonFormatter, level: int = logging.NOTSET) -> None:
        super().__init__(level)
        self.setFormatter(formatter)
        setattr(self, HANDLER_TAG, True)

    def setFormatter(self, fmt: logging.Formatter | None) -> None:  # noqa: N802 - logging's name
        if not isinstance(fmt, EcsJsonFormatter):
            raise TypeError("EcsHandler needs an EcsJsonFormatter")
        super().setFormatter(fmt)
        self._event_dict = fmt.event_dict
        self._safe = fmt.safe_event_dict

    def handle(self, record: logging.LogRecord) -> bool:
        if self.filters and not self.filter(record):
            return False
        if record.name == "uvicorn.access" and record.levelno > logging.DEBUG and _is_probe(record):
            # Probes and scrapes are DEBUG, as Amebo and CorrelationMiddleware log them.
            if self.level > logging.DEBUG:
                return False
            record.levelno, record.levelname = logging.DEBUG, "DEBUG"
        rt = current()  # emit(), inlined: this is the hot path
        try:
            ed = self._event_dict(record, rt)
        except Exception:
            ed = self._safe(record, rt)
        rt.emit(ed)
        return True

    def emit(self, record: logging.LogRecord) -> None:
        rt = current()
        try:
            ed = self._event_dict(record, rt)
        except Exception:
            ed = self._safe(record, rt)
        rt.emit(ed)
