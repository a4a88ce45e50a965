"""A webhook subscriber for the Amebo integration tests: a real service of its own, logging
with ``configure_logging(service_name="billing")`` behind ``CorrelationMiddleware``.

``/ok`` answers 200, ``/fail`` 503, ``/flaky`` 503 on the first attempt and 200 after,
``/slow`` 200 after 8 seconds (a delivery still in flight when Amebo is stopped).  Each
delivery is logged as ``order_received`` with the headers Amebo sent, so a test can follow a
trace from the publish into the subscriber's own records.
"""

from __future__ import annotations

import asyncio

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from amebo_logging import CorrelationMiddleware, configure_logging, get_logger

configure_logging(service_name="billing")
log = get_logger("billing.webhooks")


async def receive(request: Request) -> PlainTextResponse:
    attempt = request.headers.get("x-amebo-delivery-attempt", "")
    path = request.url.path
    status = {"/ok": 200, "/slow": 200, "/fail": 503}.get(path, 503 if attempt == "1" else 200)
    log.info(
        "order_received",
        event_id=request.headers.get("x-amebo-event-id"),
        attempt=int(attempt or 0),
        answered=status,
        received_request_id=request.headers.get("x-request-id"),
        received_traceparent=request.headers.get("traceparent"),
    )
    if path == "/slow":
        await asyncio.sleep(8)
    return PlainTextResponse("ok" if status == 200 else "busy", status_code=status)


app = CorrelationMiddleware(
    Starlette(routes=[Route(p, receive, methods=["POST"]) for p in ("/ok", "/fail", "/flaky", "/slow")])
)
