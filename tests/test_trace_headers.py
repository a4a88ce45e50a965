"""One trace per request, whatever trace headers came: the records' trace is the one the app
sees, in exactly one valid ``traceparent`` (the middleware called in-process, no server)."""

from __future__ import annotations

import asyncio

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from amebo_logging import CorrelationMiddleware
from amebo_logging.correlation import parse_traceparent

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
BARE = "0af7651916cd43dd8448eb211c80319c"
VALID = f"00-{TRACE}-00f067aa0ba902b7-01"
INVALID = [
    f"00-{TRACE}-zz-01",  # malformed
    f"00-{TRACE}-0000000000000000-01",  # all-zero span
    "00-00000000000000000000000000000000-00f067aa0ba902b7-01",  # all-zero trace
    f"ff-{TRACE}-00f067aa0ba902b7-01",  # version ff
    "",
    "garbage",
]


def through(headers: list[tuple[bytes, bytes]], logfile) -> tuple[dict, list[tuple[bytes, bytes]]]:
    seen: list[list[tuple[bytes, bytes]]] = []

    async def app(scope, receive, send):
        seen.append(list(scope["headers"]))
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    async def receive():
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message):
        return None

    scope = {"type": "http", "method": "POST", "path": "/v1/events", "headers": headers, "client": ("127.0.0.1", 1)}
    before = len(logfile.records())
    asyncio.run(CorrelationMiddleware(app, share_with_app=True)(scope, receive, send))
    [access] = [r for r in logfile.records()[before:] if r["message"] == "http_request"]
    return access, seen[0]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    traceparents=st.lists(st.sampled_from([VALID, *INVALID]), max_size=3),
    bare=st.sampled_from([None, BARE, "not-hex", "0" * 32]),
    other=st.booleans(),
)
def test_the_app_sees_exactly_the_trace_the_records_carry(logfile, traceparents, bare, other):
    logfile.configure()
    headers = [(b"traceparent", v.encode()) for v in traceparents]
    if bare is not None:
        headers.append((b"x-amebo-trace-id", bare.encode()))
    if other:
        headers.append((b"content-type", b"application/json"))
    access, seen = through(headers, logfile)
    shared = [v.decode() for k, v in seen if k == b"traceparent"]
    assert [k for k, _ in seen if k == b"x-amebo-trace-id"] == []
    [only] = shared  # exactly one, and valid
    trace, parent, _flags = parse_traceparent(only)
    assert (trace, parent) == (access["trace.id"], access["span.id"])
    if traceparents == [VALID]:
        assert trace == TRACE and access["parent.id"] == "00f067aa0ba902b7"
    elif bare == BARE:
        assert trace == BARE and "parent.id" not in access
    else:  # W3C: an invalid or repeated traceparent starts a new trace
        assert trace not in (TRACE, BARE) and "parent.id" not in access
    assert ((b"content-type", b"application/json") in seen) == other
