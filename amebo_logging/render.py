"""Turning an event dict into one line of bytes: orjson JSON for machines, colour for people.

Rendering never raises.  Values orjson cannot serialize take a safe text form; structures
orjson refuses (non-string keys, integers over 64 bits, lone surrogates, nesting deeper than
orjson allows, cycles) are rebuilt into a safe copy, cut at :data:`MAX_DEPTH`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any, Final

import orjson

__all__ = ["MAX_DEPTH", "ConsoleRenderer", "format_timestamp", "render_json", "safe_repr", "timestamp_now"]

#: Containers nested deeper than this are replaced by a marker string.
MAX_DEPTH: Final = 32
_MAX_REPR: Final = 4096
_OPTIONS: Final = orjson.OPT_APPEND_NEWLINE

# --- timestamps ----------------------------------------------------------------------------

_second_cache: tuple[int, str] = (-1, "")
_time_ns = time.time_ns


def _second_prefix(second: int) -> str:
    global _second_cache
    cached = _second_cache
    if cached[0] == second:
        return cached[1]
    prefix = time.strftime("%Y-%m-%dT%H:%M:%S.", time.gmtime(second))
    _second_cache = (second, prefix)  # one tuple, so other threads see both halves or neither
    return prefix


def timestamp_now() -> str:
    """The current time as RFC 3339 UTC with microseconds, e.g. ``2026-11-27T09:44:23.123456Z``."""
    micros = _time_ns() // 1000
    second = micros // 1_000_000
    cached = _second_cache
    prefix = cached[1] if cached[0] == second else _second_prefix(second)
    return prefix + str(micros - second * 1_000_000).zfill(6) + "Z"


def format_timestamp(epoch_seconds: float) -> str:
    """*epoch_seconds* (as in ``LogRecord.created``) in the format of :func:`timestamp_now`."""
    second = int(epoch_seconds)
    micro = int((epoch_seconds - second) * 1_000_000 + 0.5)
    if micro >= 1_000_000:
        second, micro = second + 1, micro - 1_000_000
    cached = _second_cache
    prefix = cached[1] if cached[0] == second else _second_prefix(second)
    return prefix + str(micro).zfill(6) + "Z"


# --- safe values ---------------------------------------------------------------------------


def safe_repr(obj: object) -> str:
    """``repr(obj)``, cut to a sane length; a placeholder when ``__repr__`` itself fails."""
    try:
        text = repr(obj)
    except Exception:
        return f"<unrepresentable {type(obj).__qualname__} object>"
    if not isinstance(text, str):
        return f"<unrepresentable {type(obj).__qualname__} object>"
    return text if len(text) <= _MAX_REPR else text[:_MAX_REPR] + "...<cut>"


def _default(obj: Any) -> Any:
    """orjson's hook for types it does not know."""
    if isinstance(obj, (bytes, bytearray, memoryview)):
        return bytes(obj).decode("utf-8", "backslashreplace")
    if isinstance(obj, (set, frozenset)):
        return list(obj)
    if isinstance(obj, BaseException):
        return f"{type(obj).__name__}: {safe_repr(obj) if not obj.args else _safe_str(obj)}"
    if isinstance(obj, Mapping):
        return dict(obj)
    return safe_repr(obj)


def _safe_str(obj: object) -> str:
    try:
        return str(obj)
    except Exception:
        return safe_repr(obj)


def _safe_key(key: Any) -> str:
    return _safe_text(key if isinstance(key, str) else _safe_str(key))


def _safe_text(text: str) -> str:
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        return text.encode("utf-8", "backslashreplace").decode("utf-8")


def sanitize(value: Any, depth: int = 0, seen: frozenset[int] = frozenset()) -> Any:
    """A copy of *value* that orjson can always serialize (see the module docstring)."""
    tp = type(value)
    if value is None or tp is bool or tp is float:
        return value
    if tp is str:
        return _safe_text(value)
    if isinstance(value, int):
        return int(value) if -(2**63) <= value < 2**64 else str(value)
    if depth >= MAX_DEPTH:
        return f"<cut: nested deeper than {MAX_DEPTH} levels>"
    if isinstance(value, (dict, Mapping, list, tuple, set, frozenset)):
        if id(value) in seen:
            return "<cut: recursive reference>"
        inner = seen | {id(value)}
        try:
            if isinstance(value, Mapping):
                return {_safe_key(k): sanitize(v, depth + 1, inner) for k, v in value.items()}
            return [sanitize(v, depth + 1, inner) for v in value]
        except Exception:
            return safe_repr(value)
    try:
        orjson.dumps(value)  # datetimes, UUIDs, dataclasses, enums, numpy: orjson's own form
        return value
    except Exception:
        pass
    try:
        replacement = _default(value)
    except Exception:
        return safe_repr(value)
    return sanitize(replacement, depth + 1, seen | {id(value)})


def render_json(event_dict: Mapping[str, Any]) -> bytes:
    """*event_dict* as one JSON object and a newline.  Never raises."""
    try:
        return orjson.dumps(event_dict, default=_default, option=_OPTIONS)
    except Exception:
        pass
    try:
        return orjson.dumps(sanitize(event_dict), option=_OPTIONS)
    except Exception as exc:  # pragma: no cover - sanitize() output is always serializable
        fallback = {k: _safe_str(v) for k, v in list(event_dict.items())[:3]}
        fallback["error.message"] = f"amebo_logging could not render this record: {exc}"
        return orjson.dumps(fallback, option=_OPTIONS)


# --- the console ---------------------------------------------------------------------------

#: Fields that are the same on every record of a process; the console leaves them out.
_CONSTANT_FIELDS: Final = frozenset(
    {"ecs.version", "service.name", "service.version", "service.environment", "process.pid"}
)


class ConsoleRenderer:
    """Renders an ECS event dict as one readable line (plus a traceback) for development.

    It shows the time, level, message and logger first, then every other field of the
    record except those constant for the whole process (``ecs.version``, ``service.*``,
    ``process.pid``).  Colours are used when *colors* is true.
    """

    def __init__(self, colors: bool) -> None:
        import structlog.dev

        self._inner: Callable[..., str] = structlog.dev.ConsoleRenderer(
            colors=colors, exception_formatter=structlog.dev.plain_traceback, sort_keys=False
        )

    def __call__(self, event_dict: Mapping[str, Any]) -> bytes:
        try:
            shown: dict[str, Any] = {
                "timestamp": event_dict.get("@timestamp"),
                "level": event_dict.get("log.level"),
                "event": event_dict.get("message"),
                "logger_name": event_dict.get("log.logger"),
            }
            for key, value in event_dict.items():
                if key in ("@timestamp", "log.level", "message", "log.logger", "error.stack_trace"):
                    continue
                if key not in _CONSTANT_FIELDS:
                    shown[key] = sanitize(value)
            if "error.stack_trace" in event_dict:
                shown["exception"] = event_dict["error.stack_trace"]
            text = self._inner(None, str(shown["level"]), shown)
            return (text + "\n").encode("utf-8", "backslashreplace")
        except Exception:
            return render_json(event_dict)
