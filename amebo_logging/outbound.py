"""httpx event hooks that carry the current correlation id and trace context outward.

Amebo's webhook deliverer (aproko) calls subscribers with httpx; with these hooks each
delivery carries ``X-Request-ID`` and, when a trace is known, ``traceparent``::

    client = httpx.Client(event_hooks=httpx_event_hooks())
    client = httpx.AsyncClient(event_hooks=async_httpx_event_hooks())

Headers the caller set explicitly are left as they are.  ``traceparent`` carries the current
span (the request's own, opened by the middleware, or a delivery's) as the callee's parent.
"""

from __future__ import annotations

from typing import Any

from .correlation import get_correlation_id, get_trace_context

__all__ = ["add_correlation_headers", "async_add_correlation_headers", "async_httpx_event_hooks", "httpx_event_hooks"]


def add_correlation_headers(request: Any, header: str = "X-Request-ID") -> None:
    """httpx ``request`` hook: add the id and ``traceparent`` of the current context."""
    headers = request.headers
    cid = get_correlation_id()
    if cid is not None and header not in headers:
        headers[header] = cid
    trace = get_trace_context()
    if trace is not None and "traceparent" not in headers:
        headers["traceparent"] = trace.header()


async def async_add_correlation_headers(request: Any) -> None:
    """The ``httpx.AsyncClient`` form of :func:`add_correlation_headers`."""
    add_correlation_headers(request)


def httpx_event_hooks() -> dict[str, list[Any]]:
    """``event_hooks`` for ``httpx.Client``."""
    return {"request": [add_correlation_headers]}


def async_httpx_event_hooks() -> dict[str, list[Any]]:
    """``event_hooks`` for ``httpx.AsyncClient``."""
    return {"request": [async_add_correlation_headers]}
