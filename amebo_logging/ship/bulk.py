"""The bulk sender: one batch at a time, read item by item, retried until every item is settled.

Per item: 200/201 is delivered; 409 (the ``_id`` exists: a replay) is delivered; 429 and 5xx
are retried with exponential backoff and jitter, without limit; any other status (400 mapping
conflicts and the like) is permanent: the document goes to the dead-letter file and counts as
settled.  A whole request that fails (connection refused, timeout, 429, 5xx, or any other
error status) is retried the same way.  Only a *hard stop* (the shutdown timeout) ends the
retries early; what is unsettled then is simply not committed, and is read again next time.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from elasticsearch import ApiError, Elasticsearch, TransportError

from .batch import Batch

__all__ = ["Backoff", "BulkSender", "DeliveryStats", "PermanentFailures", "DURATION_BUCKETS"]

FILTER_PATH = "errors,items.*.status,items.*.error"

#: Upper bounds (seconds) of the bulk request duration histogram.
DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


class PermanentFailures(Protocol):
    """Where documents Elasticsearch refused for good go (the dead-letter file, or a count)."""

    where: str

    def record(self, batch: Batch, refused: list[tuple[int, int, Any]]) -> None:
        """Keep (index, status, error) of each refused document; raise OSError if it cannot."""


@dataclass
class DeliveryStats:
    """Counts kept by the sending side; the monitor reads them, never steers by them."""

    delivered: int = 0
    duplicates: int = 0
    dead_lettered: int = 0
    retries: dict[str, int] = field(default_factory=lambda: {"429": 0, "5xx": 0, "connection": 0, "other": 0})
    bulk_requests: int = 0
    bulk_buckets: list[int] = field(default_factory=lambda: [0] * len(DURATION_BUCKETS))
    bulk_seconds_sum: float = 0.0
    last_delivery: float | None = None  # wall-clock time of the last settled item
    last_ok: float | None = None  # wall-clock time of the last request Elasticsearch answered 2xx
    last_failure: tuple[float, str, str] | None = None  # (time, kind, reason) of the last failed request

    def observe(self, seconds: float) -> None:
        self.bulk_requests += 1
        self.bulk_seconds_sum += seconds
        for i, bound in enumerate(DURATION_BUCKETS):
            if seconds <= bound:
                self.bulk_buckets[i] += 1
                break


class Backoff:
    """Exponential backoff with jitter: about initial, 2x, 4x ... up to *maximum* seconds."""

    def __init__(self, initial: float = 0.5, maximum: float = 30.0) -> None:
        self.initial, self.maximum = initial, maximum
        self.failures = 0

    def next_delay(self) -> float:
        ceiling = min(self.maximum, self.initial * (2 ** min(self.failures, 30)))
        self.failures += 1
        return ceiling / 2 + random.uniform(0, ceiling / 2)

    def reset(self) -> None:
        self.failures = 0


def _cause(status: int | None) -> str:
    if status is None:
        return "connection"
    if status == 429:
        return "429"
    if status >= 500:
        return "5xx"
    return "other"


class BulkSender:
    """Sends batches to *target* (a data stream or an index) with ``create`` operations."""

    def __init__(
        self,
        client: Elasticsearch,
        target: str,
        dead_letter: PermanentFailures,
        *,
        stats: DeliveryStats,
        backoff: Backoff,
        hard_stop: threading.Event,
        on_problem: Callable[[str, dict[str, Any]], None],
    ) -> None:
        self.client = client
        self.target = target
        self.dead_letter = dead_letter
        self.stats = stats
        self.backoff = backoff
        self.hard_stop = hard_stop
        self.on_problem = on_problem

    def _wait(self) -> bool:
        """Back off; False when the hard stop came first."""
        return not self.hard_stop.wait(self.backoff.next_delay())

    def _request(self, body: bytes) -> tuple[dict[str, Any] | None, int | None, str]:
        """(response, None, '') on HTTP 2xx; (None, status or None, reason) on failure."""
        started = time.perf_counter()
        try:
            resp = self.client.bulk(operations=body, index=self.target, filter_path=FILTER_PATH)
            self.stats.last_ok = time.time()
            return resp.body, None, ""
        except ApiError as exc:
            kind = "auth" if exc.status_code in (401, 403) else "http"
            reason = f"HTTP {exc.status_code} {exc.message}"
            self.stats.last_failure = (time.time(), kind, reason)
            return None, exc.status_code, reason
        except TransportError as exc:
            reason = f"{type(exc).__name__}: {exc.message}"
            self.stats.last_failure = (time.time(), "connection", reason)
            return None, None, reason
        finally:
            self.stats.observe(time.perf_counter() - started)

    def deliver(self, batch: Batch) -> bytearray:
        """Settle every document of *batch*; returns a flag per document (1 = settled)."""
        n = len(batch)
        settled = bytearray(n)
        pending = list(range(n))
        while pending:
            body = batch.body() if len(pending) == n else batch.body(pending)
            resp, status, reason = self._request(body)
            items = None
            if resp is not None:
                items = resp.get("items")
                count = len(items) if items is not None else resp.get("items_count")
                if count == len(pending) and resp.get("errors") is False:  # the usual answer
                    for i in pending:
                        settled[i] = 1
                    self.stats.delivered += len(pending)
                    self.stats.last_delivery = time.time()
                    self.backoff.reset()
                    return settled
                if count != len(pending) or items is None:
                    items, status = None, 200
                    reason = f"the bulk response has {count} items for {len(pending)} operations"
            if items is None:  # the whole request failed: retry it
                cause = _cause(status)
                self.stats.retries[cause] += 1
                self.on_problem("bulk_request_failed", {"reason": reason, "retry_cause": cause,
                                                        "documents": len(pending)})
                if not self._wait():
                    return settled
                continue
            pending = self._settle_items(batch, pending, items, settled)
            if pending:
                self.on_problem("documents_retried", {"documents": len(pending)})
                if not self._wait():
                    return settled
            else:
                self.backoff.reset()
        return settled

    def _settle_items(self, batch: Batch, pending: list[int], items: list[Any], settled: bytearray) -> list[int]:
        retry: list[int] = []
        dead: list[tuple[int, int, Any]] = []
        delivered = duplicates = 0
        for i, item in zip(pending, items):
            result = next(iter(item.values())) if isinstance(item, dict) and item else {}
            status = result.get("status", 0) if isinstance(result, dict) else 0
            if 200 <= status < 300:
                settled[i] = 1
                delivered += 1
            elif status == 409:
                settled[i] = 1
                duplicates += 1
            elif status == 429 or status >= 500 or status == 0:
                retry.append(i)
                self.stats.retries[_cause(status or None)] += 1
            else:
                dead.append((i, status, result.get("error")))
        if dead:
            try:
                self.dead_letter.record(batch, dead)
            except OSError as exc:  # not kept: they stay pending, nothing is lost
                self.on_problem("dead_letter_write_failed", {"error.message": str(exc),
                                                             "file.path": self.dead_letter.where})
                retry.extend(i for i, _, _ in dead)
            else:
                for i, _, _ in dead:
                    settled[i] = 1
                self.stats.dead_lettered += len(dead)
                reason = dead[0][2].get("reason") if isinstance(dead[0][2], dict) else dead[0][2]
                self.on_problem("documents_dead_lettered", {"documents": len(dead), "first_reason": reason,
                                                            "file.path": self.dead_letter.where})
        self.stats.delivered += delivered
        self.stats.duplicates += duplicates
        if delivered or duplicates or dead:
            self.stats.last_delivery = time.time()
        retry.sort()
        return retry
