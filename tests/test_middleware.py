"""CorrelationMiddleware through a real uvicorn server on loopback, and the httpx hooks."""

from __future__ import annotations

import asyncio

import httpx
import pytest
from starlette.applications import Starlette
from starlette.responses import JSONResponse, PlainTextResponse
from starlette.routing import Route

from amebo_logging import (
    CorrelationMiddleware,
    async_httpx_event_hooks,
    get_correlation_id,
    get_logger,
    get_trace_context,
    httpx_event_hooks,
)

from .asgi_server import serve

TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


async def whoami(request):
    # yield to the loop a few times, so that concurrent requests really interleave
    for _ in range(3):
        await asyncio.sleep(0)
    get_logger("amebo.handler").info("handled", tag=request.query_params.get("tag"))
    trace = get_trace_context()
    return JSONResponse({"cid": get_correlation_id(), "trace": trace.trace_id if trace else None})


async def boom(request):
    raise RuntimeError("handler exploded")


async def health(request):
    return PlainTextResponse("ok")


def starlette_app():
    return CorrelationMiddleware(
        Starlette(
            routes=[
                Route("/whoami", whoami),
                Route("/boom", boom),
                Route("/health", health),
            ]
        )
    )


async def raw_asgi_app(scope, receive, send):
    """A framework-less ASGI app, as heaven exposes one."""
    body = (get_correlation_id() or "").encode()
    await send({"type": "http.response.start", "status": 200, "headers": [(b"x-request-id", b"app-set")]})
    await send({"type": "http.response.body", "body": body})


@pytest.fixture
def server(logfile):
    logfile.configure(level="debug")
    with serve(starlette_app()) as url:
        yield url


@pytest.mark.slow
def test_generates_an_id_echoes_it_and_logs_it(server, logfile):
    r = httpx.get(f"{server}/whoami")
    rid = r.headers["x-request-id"]
    assert len(rid) == 32 and int(rid, 16) >= 0
    assert r.json()["cid"] == rid
    [access] = logfile.wait_for("http_request")
    [handled] = logfile.wait_for("handled")
    assert handled["correlation_id"] == rid
    assert access["correlation_id"] == rid and access["log.level"] == "info"
    assert access["http.request.method"] == "GET" and access["url.path"] == "/whoami"
    assert access["http.response.status_code"] == 200 and access["client.ip"] == "127.0.0.1"
    assert access["event.duration"] > 0 and access["user_agent.original"].startswith("python-httpx/")


@pytest.mark.slow
def test_inbound_id_and_traceparent_are_adopted_with_a_span_of_our_own(server, logfile):
    r = httpx.get(f"{server}/whoami", headers={"X-Request-ID": "edge-1:a.b_c", "traceparent": TRACEPARENT})
    assert r.headers["x-request-id"] == "edge-1:a.b_c"
    assert r.json() == {"cid": "edge-1:a.b_c", "trace": "4bf92f3577b34da6a3ce929d0e0e4736"}
    handled = next(rec for rec in logfile.records() if rec["message"] == "handled")
    [access] = logfile.wait_for("http_request")
    assert handled["trace.id"] == "4bf92f3577b34da6a3ce929d0e0e4736"
    assert handled["parent.id"] == "00f067aa0ba902b7"  # the caller's span
    assert len(handled["span.id"]) == 16 and handled["span.id"] != "00f067aa0ba902b7"  # this request's own
    assert access["span.id"] == handled["span.id"] and access["parent.id"] == "00f067aa0ba902b7"


@pytest.mark.slow
def test_a_request_without_a_trace_starts_one(server, logfile):
    first = httpx.get(f"{server}/whoami").json()["trace"]
    second = httpx.get(f"{server}/whoami", headers={"X-Amebo-Trace-Id": "ab" * 16}).json()["trace"]
    assert len(first) == 32 and int(first, 16) and second == "ab" * 16
    records = logfile.wait_for("http_request", 2)
    assert [r["trace.id"] for r in records] == [first, second]
    assert all(len(r["span.id"]) == 16 and "parent.id" not in r for r in records)


@pytest.mark.slow
def test_share_with_app_lets_the_app_see_the_ids_it_made(logfile):
    logfile.configure()
    seen = []

    async def app(scope, receive, send):
        headers = dict(scope["headers"])
        seen.append((headers.get(b"x-request-id"), headers.get(b"traceparent")))
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    with serve(CorrelationMiddleware(app, share_with_app=True)) as url:
        made = httpx.get(url)
        httpx.get(url, headers={"X-Request-ID": "mine", "traceparent": TRACEPARENT})
    [access_made, access_given] = logfile.wait_for("http_request", 2)
    rid, traceparent = seen[0]
    assert rid.decode() == made.headers["x-request-id"] == access_made["correlation_id"]
    assert traceparent.decode() == f"00-{access_made['trace.id']}-{access_made['span.id']}-01"
    # the caller's trace, with this request's span as the app's parent
    assert seen[1] == (b"mine", f"00-{access_given['trace.id']}-{access_given['span.id']}-01".encode())
    assert access_given["trace.id"] == TRACEPARENT.split("-")[1]


@pytest.mark.parametrize(
    ("address", "fields"),
    [
        ("10.0.0.7", {"client.ip": "10.0.0.7"}),
        ("::1", {"client.ip": "::1"}),
        ("[2001:db8::1]", {"client.ip": "2001:db8::1"}),
        ("/run/amebo.sock", {"client.address": "/run/amebo.sock"}),
        ("testclient", {"client.address": "testclient"}),
        (None, {}),
    ],
)
def test_client_ip_is_only_ever_a_valid_ip(address, fields):
    from amebo_logging.asgi import client_fields

    assert client_fields(address) == fields


@pytest.mark.slow
@pytest.mark.parametrize("bad", ["x" * 129, "has space", "semi;colon", "new\u00e9line", "a/b"])
def test_invalid_ids_are_replaced_and_never_logged_raw(server, logfile, bad):
    r = httpx.get(f"{server}/whoami", headers={"X-Request-ID": bad.encode("utf-8")})
    rid = r.headers["x-request-id"]
    assert rid != bad and len(rid) == 32
    [rejected] = logfile.wait_for("request_id_rejected")
    logfile.wait_for("http_request")
    assert bad not in logfile.path.read_text()
    assert rejected["correlation_id"] == rid and rejected["length"] == len(bad.encode("utf-8"))


@pytest.mark.slow
def test_500_carries_the_id_and_is_logged_with_the_error(server, logfile):
    r = httpx.get(f"{server}/boom", headers={"X-Request-ID": "err-1"})
    assert r.status_code == 500 and r.headers["x-request-id"] == "err-1"
    [access] = logfile.wait_for("http_request")
    assert access["log.level"] == "error" and access["http.response.status_code"] == 500
    assert access["error.type"] == "RuntimeError" and access["error.message"] == "handler exploded"
    assert access["correlation_id"] == "err-1"
    # nothing is left behind after the exception: the next request gets its own id
    after = httpx.get(f"{server}/whoami")
    assert after.json()["cid"] == after.headers["x-request-id"] != "err-1"


@pytest.mark.slow
def test_probe_paths_log_at_debug(server, logfile):
    httpx.get(f"{server}/health")
    [access] = logfile.wait_for("http_request")
    assert access["log.level"] == "debug" and access["url.path"] == "/health"


@pytest.mark.slow
def test_concurrent_requests_never_see_each_others_ids(server, logfile):
    n = 200

    async def main():
        limits = httpx.Limits(max_connections=50)
        async with httpx.AsyncClient(base_url=server, limits=limits, timeout=30) as client:
            return await asyncio.gather(
                *(
                    client.get("/whoami", params={"tag": str(i)}, headers={"X-Request-ID": f"req-{i}"} if i % 2 else {})
                    for i in range(n)
                )
            )

    responses = asyncio.run(main())
    ids = [r.headers["x-request-id"] for r in responses]
    assert len(set(ids)) == n
    for i, r in enumerate(responses):
        assert r.json()["cid"] == ids[i]
        if i % 2:
            assert ids[i] == f"req-{i}"
    handled = logfile.wait_for("handled", n)
    assert len(handled) == n
    access = logfile.wait_for("http_request", n)
    assert sorted(rec["correlation_id"] for rec in access) == sorted(ids)
    for rec in handled:
        assert rec["correlation_id"] == ids[int(rec["tag"])]


@pytest.mark.slow
def test_works_around_a_raw_asgi_app_and_replaces_its_header(logfile):
    logfile.configure()
    with serve(CorrelationMiddleware(raw_asgi_app, header="X-Correlation-ID")) as url:
        r = httpx.get(url, headers={"X-Correlation-ID": "abc"})
    assert r.text == "abc" and r.headers["x-correlation-id"] == "abc"
    assert r.headers.get_list("x-request-id") == ["app-set"]


@pytest.mark.slow
def test_httpx_hooks_forward_the_id_and_traceparent(logfile):
    logfile.configure()
    seen = []

    async def echo(scope, receive, send):
        headers = dict(scope["headers"])
        seen.append((headers.get(b"x-request-id"), headers.get(b"traceparent")))
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    from amebo_logging import correlation_scope, set_trace_context

    with serve(echo) as url:
        with correlation_scope("delivery-1"):
            set_trace_context(TRACEPARENT, new_span=False)
            with httpx.Client(event_hooks=httpx_event_hooks()) as client:
                client.post(url)
                client.post(url, headers={"X-Request-ID": "explicit"})

        async def send_async():
            with correlation_scope("delivery-2"):
                async with httpx.AsyncClient(event_hooks=async_httpx_event_hooks()) as client:
                    await client.post(url)

        asyncio.run(send_async())
        with httpx.Client(event_hooks=httpx_event_hooks()) as client:
            client.post(url)  # no context: nothing added
    assert seen == [
        (b"delivery-1", TRACEPARENT.encode()),
        (b"explicit", TRACEPARENT.encode()),
        (b"delivery-2", None),
        (None, None),
    ]
