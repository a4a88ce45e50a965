"""A bulk transport answering from a function, in the manner of httpx's ``MockTransport`` (a test
helper): the sender's classification, retries, backoff and 413 split, tested without a server."""

from __future__ import annotations

import threading
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson

from amebo_logging.ship.transport import Answer


@dataclass(frozen=True)
class Request:
    body: bytes  # as the shipper built it (uncompressed, when it was sent gzipped)
    target: str
    gzipped: bool = False

    @property
    def ids(self) -> list[str]:
        """The ``_id`` of each document in the body, in order."""
        lines = self.body.split(b"\n")[:-1]
        return [next(iter(orjson.loads(action).values()))["_id"] for action in lines[0::2]]

    @property
    def documents(self) -> list[dict[str, Any]]:
        return [orjson.loads(source) for source in self.body.split(b"\n")[:-1][1::2]]

    def __len__(self) -> int:
        return self.body.count(b"\n") // 2


class MockTransport:
    """Each request goes to *handler*, which returns the :class:`Answer`; every request is kept."""

    def __init__(self, handler: Callable[[Request], Answer]) -> None:
        self.handler = handler
        self.requests: list[Request] = []
        self._lock = threading.Lock()

    def send(self, body: bytes, target: str, *, gzipped: bool = False) -> Answer:
        request = Request(zlib.decompress(body, 31) if gzipped else body, target, gzipped)
        with self._lock:
            self.requests.append(request)
        return self.handler(request)

    def close(self) -> None:
        pass


def accepted(request: Request) -> Answer:
    """Every document indexed (the common answer, as the transport short-cuts it)."""
    return Answer({"errors": False, "items_count": len(request)}, 200, node="mock")


def items(*statuses: int | tuple[int, dict[str, Any]], failure_store: set[int] = frozenset()) -> Answer:  # type: ignore[assignment]
    """A 200 answer with one item per status (or (status, error))."""
    out = []
    for k, st in enumerate(statuses):
        status, error = st if isinstance(st, tuple) else (st, None)
        item: dict[str, Any] = {"status": status}
        if error is not None:
            item["error"] = error
        elif status >= 300:
            item["error"] = {"type": "x", "reason": f"status {status}"}
        if k in failure_store:
            item["failure_store"] = "used"
        out.append({"create": item})
    return Answer({"errors": any(s >= 300 for s, *_ in [(x if isinstance(x, tuple) else (x,)) for x in statuses]),
                   "items": out}, 200, node="mock")  # fmt: skip


def refused(status: int | None, error_type: str = "", reason: str = "", *, timeout: bool = False) -> Answer:
    """A request that failed: an HTTP status (None: no answer)."""
    return Answer(None, status, reason or f"HTTP {status}", error_type, timeout=timeout, node="mock")
