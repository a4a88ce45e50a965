"""Writes a stream of realistic Amebo records: a live look at the format, and demo data."""

from __future__ import annotations

import logging
import random
import time

from . import events
from .config import configure_logging
from .correlation import correlation_scope, set_trace_context
from .logger import get_logger

_ACTIONS = ("user.created", "user.deleted", "order.paid", "invoice.sent", "stock.low")
_APPS = ("accounts", "billing", "inventory")


class _DeliveryError(Exception):
    pass


def run(count: int | None = 20, interval: float = 0.0, seed: int | None = None) -> None:
    """Log *count* rounds (forever when ``None``) of publish, deliver and access records."""
    configure_logging()
    rng = random.Random(seed)
    log = get_logger("amebo.gists")
    deliverer = get_logger("amebo.aproko")
    access = logging.getLogger("amebo.access")
    n = 0
    while count is None or n < count:
        n += 1
        action, app = rng.choice(_ACTIONS), rng.choice(_APPS)
        with correlation_scope():
            set_trace_context(f"00-{rng.getrandbits(128):032x}-{rng.getrandbits(64):016x}-01")
            events.event_published(log, action=action, application=app, event_id=f"evt_{n}", size=rng.randint(80, 4000))
            url = f"https://hooks.example.com/{app}/{action}?sig=secret"
            if rng.random() < 0.85:
                events.webhook_delivered(
                    deliverer,
                    event_id=f"evt_{n}",
                    subscription=f"sub_{n % 7}",
                    action=action,
                    url=url,
                    status_code=200,
                    duration_ns=rng.randint(5, 900) * 1_000_000,
                )
            else:
                events.webhook_failed(
                    deliverer,
                    event_id=f"evt_{n}",
                    subscription=f"sub_{n % 7}",
                    action=action,
                    url=url,
                    attempt=rng.randint(1, 5),
                    max_retries=5,
                    status_code=503,
                    duration_ns=rng.randint(5, 30_000) * 1_000_000,
                    error=_DeliveryError("subscriber answered 503"),
                )
            if rng.random() < 0.05:
                events.schema_validation_failed(
                    log, action=action, application=app, errors=["$.email: 'email' is a required property"]
                )
            status = rng.choice((200, 200, 200, 201, 400, 404, 500))
            access.info(
                "%s %s -> %s %sms",
                "POST",
                "/v1/events",
                status,
                12.5,
                extra={
                    "method": "POST",
                    "path": "/v1/events",
                    "status": status,
                    "duration_ms": rng.uniform(0.5, 80.0),
                    "client_ip": "10.0.0.7",
                },
            )
        if interval:
            time.sleep(interval)
