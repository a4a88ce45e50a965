"""A webhook subscriber for the compose stack: a service of its own ("billing"), logging with
amebo-logging, so Kibana shows a delivery's trace continue into the subscriber's records.

``/ok`` answers 200; ``/flaky`` answers 503 to a first attempt and 200 after (so Amebo
retries, and webhook_failed records appear).  Served by uvicorn:
``uvicorn subscriber:app --app-dir deploy/compose --port 8000``.
"""

from __future__ import annotations

from typing import Any

from amebo_logging import CorrelationMiddleware, configure_logging, get_logger

configure_logging(service_name="billing")
log = get_logger("billing.webhooks")


async def receive(scope: dict[str, Any], receive_: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    while (await receive_()).get("more_body"):
        pass
    headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
    attempt = headers.get("x-amebo-delivery-attempt", "")
    status = 503 if scope["path"] == "/flaky" and attempt == "1" else 200
    log.info("order_received", attempt=int(attempt or 0), answered=status)
    await send({"type": "http.response.start", "status": status, "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": b"ok" if status == 200 else b"busy"})


app = CorrelationMiddleware(receive)
