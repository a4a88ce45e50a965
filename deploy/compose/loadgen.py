"""Load for the compose stack: sets up an application, an action and two subscriptions in
Amebo, then publishes events for ever (one in six fails the action's schema), some with the
publisher's X-Request-ID or traceparent.  Logs with amebo-logging as service "amebo-load".

    python deploy/compose/loadgen.py   # AMEBO_URL, AMEBO_ADMIN_KEY, SUBSCRIBER_URL, LOAD_INTERVAL
"""

from __future__ import annotations

import os
import random
import secrets
import signal
import time

import httpx

from amebo_logging import configure_logging, get_logger

configure_logging(service_name="amebo-load")
log = get_logger("amebo.load")

AMEBO = os.environ.get("AMEBO_URL", "http://amebo:3310")
SUBSCRIBER = os.environ.get("SUBSCRIBER_URL", "http://amebo-subscriber:8000")
INTERVAL = float(os.environ.get("LOAD_INTERVAL", "0.5"))
ADMIN = {"X-Amebo-Admin-Key": os.environ["AMEBO_ADMIN_KEY"]}
SCHEMA = {
    "type": "object",
    "properties": {"id": {"type": "integer"}, "total": {"type": "number"}},
    "required": ["id", "total"],
}


def wait_for_amebo(client: httpx.Client) -> None:
    while True:
        try:
            if client.get("/health").status_code < 500:
                return
        except httpx.HTTPError:
            pass
        log.info("waiting_for_amebo", **{"url.full": AMEBO})
        time.sleep(2)


def set_up(client: httpx.Client) -> None:
    """The application, action and subscriptions (an existing one is fine)."""
    steps = [
        ("/v1/applications", {"application": "shop", "address": SUBSCRIBER, "secret": secrets.token_hex(16)}),
        ("/v1/actions", {"action": "order.created", "application": "shop", "schemata": SCHEMA}),
        ("/v1/subscriptions", {"application": "shop", "action": "order.created", "handler": "/ok", "max_retries": 3}),
        (
            "/v1/subscriptions",
            {"application": "shop", "action": "order.created", "handler": "/flaky", "max_retries": 3},
        ),
    ]
    for path, body in steps:
        r = client.post(path, headers=ADMIN, json=body)
        log.info("set_up", **{"url.path": path, "http.response.status_code": r.status_code})


def main() -> None:
    rng = random.Random()
    stopping: list[int] = []
    # docker stop: finish the publish under way (and its record), then exit
    signal.signal(signal.SIGTERM, lambda signum, frame: stopping.append(signum))
    with httpx.Client(base_url=AMEBO, timeout=30) as client:
        wait_for_amebo(client)
        set_up(client)
        n = 0
        while not stopping:
            n += 1
            headers = dict(ADMIN)
            if n % 3 == 0:
                headers["X-Request-ID"] = f"checkout-{n}"
            elif n % 3 == 1:
                headers["traceparent"] = f"00-{secrets.token_hex(16)}-{secrets.token_hex(8)}-01"
            payload = {"id": n, "total": round(rng.uniform(5, 500), 2)} if n % 6 else {"id": f"not-a-number-{n}"}
            try:
                r = client.post(
                    "/v1/events",
                    headers=headers,
                    json={"action": "order.created", "deduper": f"order-{n}", "payload": payload},
                )
                log.info("published", **{"http.response.status_code": r.status_code})
            except httpx.HTTPError as exc:
                log.warning("publish_failed", **{"error.message": str(exc)})
            time.sleep(INTERVAL)


if __name__ == "__main__":
    main()
