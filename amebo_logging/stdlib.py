"""The stdlib bridge: ``logging`` records rendered in the same ECS shape as structlog's.

:class:`EcsJsonFormatter` is a python-json-logger formatter (a ``BaseJsonFormatter``) that
builds the same event dict as :class:`amebo_logging.logger.AmeboLogger`: the ECS header,
the logger's constant fields, the current correlation context, then the record's ``extra``
fields, redacted.  Amebo 0.9's access extras (``method``, ``path``, ``status``,
``duration_ms``, ``client_ip``) become ECS fields; uvicorn's ``color_message`` is dropped.

:class:`EcsHandler` writes each formatted record with one ``write()`` through the sink.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any, Final

from pythonjsonlogger.core import RESERVED_ATTRS, BaseJsonFormatter

from . import logger as _logger
from .asgi import QUIET_PATHS, client_fields
from .correlation import _CONTEXT, legacy_request_id
from .processors import error_fields, protect_header
from .redaction import may_hold_secrets, redactor, scrub_text
from .render import format_timestamp, render_json

__all__ = ["HANDLER_TAG", "EcsHandler", "EcsJsonFormatter"]

#: The attribute that marks a root handler as installed by configure_logging().  It is the
#: tag Amebo 0.9's own ``amebo.utils.logs`` uses, so each replaces the other's handler.
HANDLER_TAG: Final = "_amebo_log_handler"

_RESERVED: Final = frozenset(RESERVED_ATTRS) | {"message", "asctime", "color_message", "request_id"}
_LEVEL_NAMES: Final = {10: "debug", 20: "info", 30: "warning", 40: "error", 50: "critical"}
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
    if isinstance(duration_ms, (int, float)):
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


class EcsJsonFormatter(BaseJsonFormatter):
    """python-json-logger formatter giving stdlib records the toolkit's ECS record shape.

    ``format()`` returns the JSON text (no newline), as ``logging.Formatter`` does;
    :meth:`format_bytes` returns the whole line, which is what :class:`EcsHandler` writes.
    *render* turns the event dict into a line (JSON by default; the console renderer for
    ``fmt="console"``).
    """

    def __init__(self, render: Callable[[Mapping[str, Any]], bytes] = render_json) -> None:
        super().__init__()
        self.render = render

    def event_dict(self, record: logging.LogRecord) -> dict[str, Any]:
        """The ECS event dict of *record*."""
        msg = record.msg
        extra_from_msg: dict[str, Any] | None = None
        if isinstance(msg, dict):  # python-json-logger's logger.info({"key": value}) form
            extra_from_msg = dict(msg)
            key = "message" if "message" in extra_from_msg else "event"
            message = extra_from_msg.pop(key, "")
        else:
            try:
                message = record.getMessage()
            except Exception as exc:
                message = f"{msg} {record.args!r} (could not be formatted: {exc})"
            if may_hold_secrets(message):
                message = scrub_text(message)
        level = _LEVEL_NAMES.get(record.levelno) or record.levelname.lower()
        name = _logger._name(record.name)
        template = name.templates.get(level)
        if template is not None:
            ed = template.copy()
            ed["@timestamp"] = format_timestamp(record.created)
            ed["message"] = message
        else:  # a custom level number
            ed = {"@timestamp": format_timestamp(record.created), "log.level": level, "message": message}
            ed.update(name.static)
        ctx = _CONTEXT.get()
        if ctx is not None:
            ed.update(ctx)
        if ctx is None or "correlation_id" not in ctx:
            rid = getattr(record, "request_id", None) or legacy_request_id()
            if rid and rid != "-":
                ed["correlation_id"] = rid
        attrs = record.__dict__
        names = attrs.keys() - _RESERVED
        if names or extra_from_msg:
            extra = {k: v for k, v in attrs.items() if k in names and not k.startswith("_")}
            if extra_from_msg:
                extra.update(extra_from_msg)
            if extra.keys() >= _ACCESS_SIGNATURE:
                extra = _access_fields(extra)
                ed["message"] = "http_request"
            ed.update(redactor().scrub_mapping(protect_header(extra)))
        elif record.name == "uvicorn.access" and isinstance(record.args, tuple) and len(record.args) == 5:
            ed.update(_uvicorn_access_fields(record.args))
        if record.exc_info:
            ed.update(error_fields(record.exc_info))
        elif record.exc_text:
            ed["error.stack_trace"] = record.exc_text
        if record.stack_info and "error.stack_trace" not in ed:
            ed["error.stack_trace"] = record.stack_info
        return ed

    def format_bytes(self, record: logging.LogRecord) -> bytes:
        """*record* as one complete line (JSON and a newline, or a console line).  Never raises."""
        try:
            return self.render(self.event_dict(record))
        except Exception as exc:
            return render_json(
                {
                    "@timestamp": format_timestamp(record.created),
                    "log.level": _LEVEL_NAMES.get(record.levelno, "error"),
                    "message": str(record.msg),
                    "log.logger": record.name,
                    "error.type": "amebo_logging.RecordError",
                    "error.message": f"this record could not be built: {type(exc).__name__}: {exc}",
                }
            )

    def format(self, record: logging.LogRecord) -> str:
        return self.format_bytes(record).decode("utf-8").rstrip("\n")

    def jsonify_log_record(self, log_data: Any) -> str:
        return render_json(log_data).decode("utf-8").rstrip("\n")


def _is_probe(record: logging.LogRecord) -> bool:
    args = record.args
    return isinstance(args, tuple) and len(args) == 5 and str(args[2]).split("?", 1)[0] in QUIET_PATHS


class EcsHandler(logging.Handler):
    """A root handler writing each record as one line through the sink in force.

    Writes are whole-line and need no handler lock; a failed write is counted, never raised.
    """

    def __init__(self, formatter: EcsJsonFormatter, level: int = logging.NOTSET) -> None:
        super().__init__(level)
        self.setFormatter(formatter)
        self._format_bytes = formatter.format_bytes
        setattr(self, HANDLER_TAG, True)

    def setFormatter(self, fmt: logging.Formatter | None) -> None:  # noqa: N802 - logging's name
        if not isinstance(fmt, EcsJsonFormatter):
            raise TypeError("EcsHandler needs an EcsJsonFormatter")
        super().setFormatter(fmt)
        self._format_bytes = fmt.format_bytes

    def handle(self, record: logging.LogRecord) -> bool:
        if self.filters and not self.filter(record):
            return False
        if record.name == "uvicorn.access" and record.levelno > logging.DEBUG and _is_probe(record):
            # Probes and scrapes are DEBUG, as Amebo and CorrelationMiddleware log them.
            if self.level > logging.DEBUG:
                return False
            record.levelno, record.levelname = logging.DEBUG, "DEBUG"
        self.emit(record)
        return True

    def emit(self, record: logging.LogRecord) -> None:
        _logger.write_line(self._format_bytes(record))
