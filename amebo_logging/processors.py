"""Record shaping the builder (:mod:`.record`) and the context share: header keys kept out
of the way of the header, and an exception's ``error.*`` fields."""

from __future__ import annotations

import sys
import traceback
from collections.abc import Mapping
from types import TracebackType
from typing import Any

__all__ = ["HEADER", "error_fields", "protect_header"]

#: The keys a record's header owns: the logger sets them, never a call's or context's field.
HEADER = ("@timestamp", "log.level", "message")


def protect_header(fields: Mapping[str, Any]) -> Mapping[str, Any]:
    """*fields* with any header key (``message``, ``log.level``, ``@timestamp``) renamed with a
    trailing underscore (``message_``), so it is kept without replacing the record's own."""
    if "message" in fields or "log.level" in fields or "@timestamp" in fields:
        return {(f"{k}_" if k in HEADER else k): v for k, v in fields.items()}
    return fields


ExcInfo = tuple[type[BaseException], BaseException, TracebackType | None]


def _exc_info_tuple(value: Any) -> ExcInfo | None:
    if value is None or value is False:
        return None
    if isinstance(value, BaseException):
        return (type(value), value, value.__traceback__)
    if isinstance(value, tuple) and len(value) == 3 and value[0] is not None:
        return value
    exc = sys.exc_info()
    return exc if exc[0] is not None else None


def _type_name(tp: type[BaseException]) -> str:
    module = getattr(tp, "__module__", "builtins")
    return tp.__qualname__ if module in ("builtins", "__main__") else f"{module}.{tp.__qualname__}"


def error_fields(exc_info: Any, stack_trace: bool = True) -> dict[str, str]:
    """The ECS ``error.*`` fields for *exc_info*: an exception, a ``sys.exc_info()`` tuple, or
    ``True`` for the exception being handled.  Empty when there is none.  Never raises."""
    try:
        ei = _exc_info_tuple(exc_info)
        if ei is None:
            return {}
        tp, exc, tb = ei
        try:
            message = str(exc)
        except Exception:
            message = f"<unprintable {tp.__qualname__}>"
        fields = {"error.type": _type_name(tp), "error.message": message}
        if stack_trace:
            fields["error.stack_trace"] = "".join(traceback.format_exception(tp, exc, tb)).rstrip("\n")
        return fields
    except Exception as exc:  # a pathological exception object
        return {"error.type": "unknown", "error.message": f"could not format the exception: {exc!r}"}
