"""Writes a stream of realistic Amebo records: a live look at the format, and demo data.

Each round is what ``amebo_logging.amebo`` writes for one publish served by the real Amebo
0.9, with the same loggers, fields and trace links (``tests/test_demo.py`` holds it to the
catalog the real integration writes):

* the publish request, under its correlation id and a trace started at the door:
  ``event_published`` (logger ``amebo.events``), or ``schema_validation_failed`` for a payload
  the action's schema refuses, then the request's ``http_request`` (``amebo.access``, 201 or
  406);
* for an accepted event, its deliveries (``amebo.aproko``), each attempt under a correlation
  id of its own, in the event's trace, on the span the deliverer puts in the ``traceparent``
  it sends: ``webhook_delivered``, or ``webhook_failed`` and a retry.
"""

from __future__ import annotations

import random
import time
from typing import Any

from . import events
from .config import configure_logging
from .correlation import TraceContext, correlation_scope, set_trace_context
from .logger import AmeboLogger, get_logger

_ACTIONS = ("user.created", "user.deleted", "order.paid", "invoice.sent", "stock.low")
_APPS = ("accounts", "billing", "inventory")
_AGENTS = ("amebo-client/0.9 python-httpx/0.28", "curl/8.5.0", "billing-service/3.2")
MAX_RETRIES = 3
_HTTP_1_1: dict[str, Any] = {"http.version": "1.1"}


def run(count: int | None = 20, interval: float = 0.0, seed: int | None = None) -> None:
    """Log *count* rounds (forever when ``None``) of publish, access and delivery records."""
    configure_logging()
    rng = random.Random(seed)
    publisher = get_logger("amebo.events")
    access = get_logger("amebo.access")
    deliverer = get_logger("amebo.aproko")
    n = 0
    while count is None or n < count:
        n += 1
        action, app = rng.choice(_ACTIONS), rng.choice(_APPS)
        event_id = f"{rng.getrandbits(128):032x}"
        trace = f"{rng.getrandbits(128):032x}"
        valid = rng.random() >= 0.1
        with correlation_scope(f"{rng.getrandbits(128):032x}"):
            set_trace_context(TraceContext((trace, f"{rng.getrandbits(64):016x}", "01")), new_span=False)
            started = time.perf_counter_ns()
            if valid:
                events.event_published(
                    publisher, action=action, application=app, event_id=event_id, size=rng.randint(80, 4000)
                )
            else:
                events.schema_validation_failed(
                    publisher,
                    action=action,
                    application=app,
                    errors=["$.email: required", "$.amount: type integer"],
                )
            events.http_request(
                access,
                method="POST",
                path="/v1/events",
                status_code=201 if valid else 406,
                duration_ns=time.perf_counter_ns() - started + rng.randint(1, 40) * 1_000_000,
                client_ip=f"10.0.{rng.randint(0, 3)}.{rng.randint(2, 250)}",
                user_agent=rng.choice(_AGENTS),
                **_HTTP_1_1,
            )
        if valid:
            for _ in range(rng.randint(1, 2)):
                _deliver(deliverer, rng, event_id, trace, action, app)
        if interval:
            time.sleep(interval)


def _deliver(log: AmeboLogger, rng: random.Random, event_id: str, trace: str, action: str, app: str) -> None:
    """One subscription's delivery attempts: failures are retried, up to MAX_RETRIES."""
    url = f"https://hooks.example.com/{app}/{action}"
    subscription = f"{rng.getrandbits(128):032x}"
    for attempt in range(1, MAX_RETRIES + 1):
        with correlation_scope(f"{rng.getrandbits(128):032x}"):
            set_trace_context(TraceContext((trace, f"{rng.getrandbits(64):016x}", "01")), new_span=False)
            common: dict[str, Any] = {
                "event_id": event_id,
                "subscription": subscription,
                "action": action,
                "url": url,
                "attempt": attempt,
                "max_retries": MAX_RETRIES,
            }
            if rng.random() < 0.8:
                events.webhook_delivered(log, status_code=200, duration_ns=rng.randint(5, 900) * 1_000_000, **common)
                return
            common |= {"error.type": "httpx.HTTPStatusError", "error.message": "HTTP 503"}  # as Amebo reports it
            events.webhook_failed(log, status_code=503, duration_ns=rng.randint(5, 3000) * 1_000_000, **common)
