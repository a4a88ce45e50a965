"""Per-request context: the correlation id, the W3C trace context and other bound fields.

Everything lives in one :class:`contextvars.ContextVar` holding a small dict that is never
changed in place: each change installs a new dict.  Reading the context on the logging hot
path is therefore one ``ContextVar.get()``, and asyncio tasks, which copy the context when
they are created, can never see each other's fields.
"""

from __future__ import annotations

import contextvars
import functools
import os
import re
import sys
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any, Final, ParamSpec, TypeVar

__all__ = [
    "TraceContext",
    "activate",
    "bind_fields",
    "clear_context",
    "correlation_scope",
    "current_context",
    "get_correlation_id",
    "get_trace_context",
    "new_correlation_id",
    "new_span_id",
    "new_trace_id",
    "parse_traceparent",
    "restore",
    "set_correlation_id",
    "set_trace_context",
    "start_trace",
    "unbind_context",
    "valid_request_id",
    "with_current_context",
]

CORRELATION_KEY: Final = "correlation_id"
_TRACE_KEYS: Final = ("trace.id", "span.id", "parent.id")

_CONTEXT: contextvars.ContextVar[Mapping[str, Any] | None] = contextvars.ContextVar(
    "amebo_logging_context", default=None
)
# The trace flags are not a record field, so they are kept beside the context, not in it.
_TRACE_FLAGS: contextvars.ContextVar[str] = contextvars.ContextVar("amebo_logging_trace_flags", default="01")

_REQUEST_ID_RE: Final = re.compile(r"[A-Za-z0-9._:-]{1,128}")
_TRACEPARENT_RE: Final = re.compile(r"([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-.*)?")


#: The fields bound to the current context (read-only), or ``None`` when there are none.  It
#: is the context variable's own ``get``: the logging hot path reads it without a Python call.
current_context: Callable[[], Mapping[str, Any] | None] = _CONTEXT.get


def activate(fields: Mapping[str, Any] | None, trace_flags: str = "01") -> tuple[Any, Any]:
    """Put *fields* in force as the whole context (a request's, say) in one step; returns the
    token that :func:`restore` takes to put back what was there before."""
    return _CONTEXT.set(dict(fields) if fields else None), _TRACE_FLAGS.set(trace_flags)


def restore(token: tuple[Any, Any]) -> None:
    """Put back the context :func:`activate` replaced."""
    context_token, flags_token = token
    _CONTEXT.reset(context_token)
    _TRACE_FLAGS.reset(flags_token)


def _update(changes: Mapping[str, Any] | None = None, remove: tuple[str, ...] = ()) -> None:
    old = _CONTEXT.get()
    new = dict(old) if old else {}
    if changes:
        new.update(changes)
    for key in remove:
        new.pop(key, None)
    _CONTEXT.set(new or None)


def new_correlation_id() -> str:
    """A fresh correlation id in Amebo's format: ``uuid4().hex``."""
    return uuid.uuid4().hex


def valid_request_id(value: str | None) -> bool:
    """Whether *value* is acceptable as an inbound request id: 1-128 of ``[A-Za-z0-9._:-]``."""
    return value is not None and _REQUEST_ID_RE.fullmatch(value) is not None


def set_correlation_id(value: str | None) -> None:
    """Set the correlation id of the current context; ``None`` removes it."""
    if value is None:
        _update(remove=(CORRELATION_KEY,))
    else:
        _update({CORRELATION_KEY: str(value)})


def get_correlation_id() -> str | None:
    """The correlation id of the current context.

    When none is set here but Amebo 0.9's own ``amebo.utils.logs`` is loaded and its request
    id is set, that id is returned, so records stay correlated during a migration.
    """
    ctx = _CONTEXT.get()
    if ctx and CORRELATION_KEY in ctx:
        return ctx[CORRELATION_KEY]
    return legacy_request_id()


def legacy_request_id() -> str | None:
    """The request id set through Amebo 0.9's ``amebo.utils.logs.set_request_id``, if any."""
    legacy = sys.modules.get("amebo.utils.logs")
    if legacy is None:
        return None
    try:
        value = legacy.request_id_var.get()
    except (AttributeError, LookupError):
        return None
    return value if value and value != "-" else None


@contextmanager
def correlation_scope(value: str | None = None) -> Iterator[str]:
    """Run a block under its own correlation id (a new one when *value* is ``None``).

    The id, trace context and bound fields in force before the block are restored after it,
    also when it raises.  Yields the id in force inside the block::

        with correlation_scope() as cid:
            deliver(webhook)
    """
    cid = value if value is not None else new_correlation_id()
    token = _CONTEXT.set({**(_CONTEXT.get() or {}), CORRELATION_KEY: cid})
    flags = _TRACE_FLAGS.set(_TRACE_FLAGS.get())
    try:
        yield cid
    finally:
        _CONTEXT.reset(token)
        _TRACE_FLAGS.reset(flags)


def bind_fields(fields: Mapping[str, Any]) -> None:
    """Bind *fields*, as they are, to every record made in the current context from now on
    (:func:`amebo_logging.bind_context` redacts them first)."""
    _update(fields)


def unbind_context(*keys: str) -> None:
    """Remove *keys* from the current context; missing keys are ignored."""
    _update(remove=keys)


def clear_context() -> None:
    """Remove the correlation id, the trace context and every bound field."""
    _CONTEXT.set(None)


# --- W3C trace context -------------------------------------------------------------------


class TraceContext(tuple[str, str, str]):
    """A parsed W3C ``traceparent``: ``(trace_id, parent_id, flags)``."""

    __slots__ = ()

    @property
    def trace_id(self) -> str:
        return self[0]

    @property
    def span_id(self) -> str:
        return self[1]

    @property
    def flags(self) -> str:
        return self[2]

    def header(self) -> str:
        """The ``traceparent`` header value (version 00) for this context: this span as the parent."""
        return f"00-{self[0]}-{self[1]}-{self[2]}"


def parse_traceparent(value: str | None) -> TraceContext | None:
    """Parse a W3C ``traceparent`` header; ``None`` when it is absent or invalid.

    Follows the Trace Context spec: version ``ff`` and all-zero trace or parent ids are
    invalid; a version 00 header must have exactly four parts; later versions may carry more.
    """
    if not value:
        return None
    m = _TRACEPARENT_RE.fullmatch(value.strip().lower())
    if m is None:
        return None
    version, trace_id, span_id, flags, rest = m.groups()
    if version == "ff" or (version == "00" and rest) or set(trace_id) == {"0"} or set(span_id) == {"0"}:
        return None
    return TraceContext((trace_id, span_id, flags))


def new_trace_id() -> str:
    """A random W3C trace id: 32 lowercase hex digits, never all zero."""
    while True:
        value = os.urandom(16).hex()
        if value != "0" * 32:
            return value


def new_span_id() -> str:
    """A random W3C span id: 16 lowercase hex digits, never all zero."""
    while True:
        value = os.urandom(8).hex()
        if value != "0" * 16:
            return value


def set_trace_context(traceparent: str | TraceContext | None, *, new_span: bool = True) -> TraceContext | None:
    """Join the trace of a ``traceparent`` (a header value or a parsed one) for the current
    context, as the W3C Trace Context receiver of that header does.

    Records then carry ``trace.id``; ``span.id``, this operation's own span, a new one; and
    ``parent.id``, the span that sent the traceparent.  Outgoing calls carry ``span.id`` as
    their parent (see :mod:`amebo_logging.outbound`).  With ``new_span=False`` the header's
    span is taken as this operation's own (a span made by the caller on our behalf, such as
    the one Amebo's deliverer puts on each delivery).  An invalid or ``None`` value clears
    the trace context.  Returns the context now in force, or ``None``.
    """
    tc = traceparent if isinstance(traceparent, TraceContext) else parse_traceparent(traceparent)
    if tc is None:
        _update(remove=_TRACE_KEYS)
        return None
    if new_span:
        _update({"trace.id": tc[0], "span.id": new_span_id(), "parent.id": tc[1]})
    else:
        _update({"trace.id": tc[0], "span.id": tc[1]}, remove=("parent.id",))
    _TRACE_FLAGS.set(tc[2])
    return get_trace_context()


def start_trace() -> TraceContext:
    """Start a new trace (a root span) for the current context and return it."""
    _update({"trace.id": new_trace_id(), "span.id": new_span_id()}, remove=("parent.id",))
    _TRACE_FLAGS.set("01")
    return get_trace_context()  # type: ignore[return-value]


def get_trace_context() -> TraceContext | None:
    """The trace context of the current context, if one was set."""
    ctx = _CONTEXT.get()
    if not ctx or "trace.id" not in ctx or "span.id" not in ctx:
        return None
    return TraceContext((ctx["trace.id"], ctx["span.id"], _TRACE_FLAGS.get()))


# --- carrying the context into threads ----------------------------------------------------

P = ParamSpec("P")
R = TypeVar("R")


def with_current_context(fn: Callable[P, R]) -> Callable[P, R]:
    """Wrap *fn* so that it runs with the correlation id and fields in force now.

    Threads start with an empty context; wrap the target to carry it over::

        threading.Thread(target=with_current_context(work)).start()
        executor.submit(with_current_context(work), item)

    The wrapper can run in several threads at once; each run restores what it replaced.
    """
    snapshot = _CONTEXT.get()
    flags = _TRACE_FLAGS.get()

    @functools.wraps(fn)
    def run(*args: P.args, **kwargs: P.kwargs) -> R:
        token = _CONTEXT.set(snapshot)
        ftoken = _TRACE_FLAGS.set(flags)
        try:
            return fn(*args, **kwargs)
        finally:
            _CONTEXT.reset(token)
            _TRACE_FLAGS.reset(ftoken)

    return run
