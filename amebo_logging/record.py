"""The one place an ECS record is built: level, logger name, message, fields, exception, time.

Both call paths are thin adapters onto :meth:`Builder.build`: the structlog bound logger
(:mod:`.logger`) and the stdlib formatter (:mod:`.stdlib`).  A record's keys come in this
order, the ECS logging order::

    @timestamp, log.level, message                      the header
    ecs.version, log.logger, service.*, process.pid     constant per logger (a cached template)
    correlation_id, trace.id, span.id, parent.id,
      bind_context() fields                             the current context
    fields bound to the logger                          redacted when bound
    the call's own fields                               redacted here; header names get a "_"
    error.type, error.message, error.stack_trace        from the exception, when there is one

A request id set the Amebo 0.9 way (``amebo.utils.logs.set_request_id``) is the
``correlation_id`` when none is set through this library, so records stay correlated while
Amebo migrates.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from typing import Any

from .correlation import current_context, legacy_request_id
from .processors import error_fields, protect_header
from .render import safe_repr
from .schema import ECS_VERSION

__all__ = ["LEVEL_NAMES", "Builder", "fallback"]

#: Level numbers and the names records carry.
LEVEL_NAMES: Mapping[int, str] = {10: "debug", 20: "info", 30: "warning", 40: "error", 50: "critical"}


class Builder:
    """Builds records for one configuration (service fields, redaction, process id)."""

    __slots__ = ("_templates", "pid", "scrub", "service")

    def __init__(self, service: Mapping[str, str], scrub: Callable[[Mapping[str, Any]], Mapping[str, Any]]) -> None:
        self.service = dict(service)
        self.scrub = scrub
        self.pid = os.getpid()
        self._templates: dict[str, dict[str, dict[str, Any]]] = {}

    def for_child(self) -> Builder:
        """The same configuration in a forked child: its own pid, its own templates."""
        return Builder(self.service, self.scrub)

    def template(self, logger: str, level: str) -> dict[str, Any]:
        """The header and constant fields of *logger*'s records at *level*, in record order
        (a call copies it: cheaper than building the dict anew)."""
        levels = self._templates.get(logger)
        if levels is None:
            levels = self._templates.setdefault(logger, {})
        found = levels.get(level)
        if found is None:
            found = {
                "@timestamp": None,
                "log.level": level,
                "message": None,
                "ecs.version": ECS_VERSION,
                "log.logger": logger,
                **self.service,
                "process.pid": self.pid,
            }
            if len(self._templates) < 10_000:
                levels[level] = found
        return found

    def build(
        self,
        level: str,
        logger: str,
        message: Any,
        timestamp: str,
        bound: Mapping[str, Any] | None = None,
        fields: Mapping[str, Any] | None = None,
        exc_info: Any = None,
        request_id: str | None = None,
    ) -> dict[str, Any]:
        """The record.  *bound* is already redacted; *fields* are redacted here; *exc_info*
        (an exception, an ``exc_info`` tuple, or ``True``) gives ``error.*``; *request_id*
        is a legacy id to use when the context has no correlation id."""
        levels = self._templates.get(logger)
        template = levels.get(level) if levels is not None else None
        ed = (template if template is not None else self.template(logger, level)).copy()
        ed["@timestamp"] = timestamp
        ed["message"] = message
        ctx = current_context()
        if ctx is not None:
            ed.update(ctx)
        if ctx is None or "correlation_id" not in ctx:
            legacy = request_id or legacy_request_id()
            if legacy is not None and legacy != "-":
                ed["correlation_id"] = legacy
        if bound:
            ed.update(bound)
        if fields:
            ed.update(self.scrub(protect_header(fields)))
        if exc_info:
            ed.update(error_fields(exc_info))
        return ed


def fallback(level: str, logger: str | None, message: Any, timestamp: str, exc: BaseException) -> dict[str, Any]:
    """A minimal record saying why a record could not be built: used instead of raising."""
    record: dict[str, Any] = {
        "@timestamp": timestamp,
        "log.level": level,
        "message": message if isinstance(message, str) else safe_repr(message),
    }
    if logger is not None:
        record["log.logger"] = logger
    record["error.type"] = "amebo_logging.RecordError"
    record["error.message"] = f"this record could not be built: {type(exc).__name__}: {safe_repr(exc)}"
    return record
