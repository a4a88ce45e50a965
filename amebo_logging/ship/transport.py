"""The transport seam: send a bulk body, get the answer, as a value.

:class:`BulkTransport` is all the bulk sender knows of the network (as httpx's transports are
all its client knows): one method, :meth:`~BulkTransport.send`, which never raises for what
a cluster or a network does (a status, a refused connection, a timeout); those are in the
:class:`Answer`.  Implementations:

* :class:`ElasticsearchTransport`: the cluster, over several nodes (Filebeat's ``hosts``):
  requests go round-robin to the live nodes; a node that cannot be reached is skipped at once
  for the next live one, and left alone for a while (1 s, doubling to 30 s) before it is
  tried again; only when no node can be reached does the request fail.  One per sender
  thread: its node states are its own.
* :class:`~.dryrun.ConsoleTransport`: ``ship --dry-run``, printing the bodies.
* ``tests/mock_transport.py``: answers from a function, in the manner of httpx's
  ``MockTransport``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import quote

import orjson
import urllib3

from .connection import ConnectionSettings, validate
from .http import HttpNode, NetworkError, Reply

__all__ = ["FILTER_PATH", "Answer", "BulkTransport", "ElasticsearchTransport", "parse_bulk_answer"]

#: What the shipper reads of a bulk answer (Elasticsearch leaves the rest out).
FILTER_PATH = "errors,items.*.status,items.*.error,items.*.failure_store"

DEAD_MIN, DEAD_MAX = 1.0, 30.0


@dataclass(frozen=True, slots=True)
class Answer:
    """One bulk request's answer.  *body* is the parsed answer on 2xx (None otherwise);
    *status* the HTTP status (None: no answer: refused, reset, timed out); *reason* says why
    it failed; *error_type* is Elasticsearch's error type; *timeout* whether it timed out;
    *node* the node that answered (or last failed); *unreachable* the nodes found unreachable
    on the way, with why."""

    body: dict[str, Any] | None
    status: int | None = None
    reason: str = ""
    error_type: str = ""
    timeout: bool = False
    node: str = ""
    unreachable: tuple[tuple[str, str], ...] = ()


class BulkTransport(Protocol):
    """Send a bulk body to *target* (*gzipped*: a gzip stream of it); the answer, never an
    exception for what the cluster does."""

    def send(self, body: bytes, target: str, *, gzipped: bool = False) -> Answer: ...

    def close(self) -> None: ...


def parse_bulk_answer(data: bytes) -> dict[str, Any]:
    """The bulk answer, with a short cut for the common one: when every item succeeded
    (``"errors":false`` before ``"items"``, no failure store used), the thousands of item
    objects are counted, not built: ``{"errors": False, "items_count": N}``."""
    items_at = data.find(b'"items":[', 0, 256)
    if items_at > 0 and b'"errors":false' in data[:items_at] and b'"failure_store":"used"' not in data:
        return {"errors": False, "items_count": data.count(b'"status":', items_at)}
    parsed = orjson.loads(data)
    if not isinstance(parsed, dict):
        raise ValueError("the bulk answer is not a JSON object")
    return parsed


def _reason(reply: Reply) -> tuple[str, str]:
    """(reason, error type) of an error answer."""
    reason, error_type = reply.error()
    return f"HTTP {reply.status}: {reason}", error_type


@dataclass(eq=False)
class _Node:
    http: HttpNode
    dead_until: float = 0.0
    failures: int = 0

    @property
    def shown(self) -> str:
        return self.http.shown


@dataclass(eq=False)
class ElasticsearchTransport:
    """Bulk requests to the nodes of *settings* (see the module docstring)."""

    settings: ConnectionSettings
    connect_timeout: float = 10.0
    _nodes: list[_Node] = field(default_factory=list, init=False)
    _next: int = field(default=0, init=False)
    _headers: dict[str, str] = field(default_factory=lambda: {"content-type": "application/x-ndjson"}, init=False)
    _gzip_headers: dict[str, str] = field(
        default_factory=lambda: {"content-type": "application/x-ndjson", "content-encoding": "gzip"}, init=False
    )

    def __post_init__(self) -> None:
        validate(self.settings)
        # one connection per node: one sender, one request at a time; bodies come gzipped,
        # or not, as the shipper chose (Batch.packed)
        self._nodes = [_Node(HttpNode(url, self.settings)) for url in self.settings.urls]

    def send(self, body: bytes, target: str, *, gzipped: bool = False) -> Answer:
        path = f"/{quote(target, safe='')}/_bulk?filter_path={FILTER_PATH}"
        headers = self._gzip_headers if gzipped else self._headers
        timeout = urllib3.Timeout(connect=min(self.connect_timeout, self.settings.request_timeout),
                                  read=self.settings.request_timeout)  # fmt: skip
        down: list[tuple[str, str]] = []
        for node in self._order(time.monotonic()):
            try:
                reply = node.http.request("POST", path, body, headers, timeout)
            except NetworkError as exc:
                if exc.read_timeout:
                    # It took the body and did not answer in time (busy, not gone): another node
                    # would be sent the same documents at once; the sender backs off instead.
                    return Answer(None, None, exc.message, timeout=True, node=node.shown, unreachable=tuple(down))
                down.append((node.shown, exc.message))
                self._down(node)  # not reached (refused, reset, TLS): the next node, now
                continue
            node.failures, node.dead_until = 0, 0.0
            status = reply.status
            gone = tuple(down)
            if reply.ok:
                try:
                    return Answer(parse_bulk_answer(reply.data), status, node=node.shown, unreachable=gone)
                except ValueError as exc:
                    reason = f"HTTP {status} with an unreadable answer ({exc})"
                    return Answer(None, status, reason, node=node.shown, unreachable=gone)
            reason, error_type = _reason(reply)
            return Answer(None, status, reason, error_type, node=node.shown, unreachable=gone)
        return Answer(None, None, down[-1][1], node=down[-1][0], unreachable=tuple(down))

    def _order(self, now: float) -> list[_Node]:
        """The nodes to try, live ones first (round-robin), then the one due back soonest."""
        nodes = self._nodes
        start = self._next % len(nodes)
        self._next += 1
        ring = nodes[start:] + nodes[:start]
        live = [n for n in ring if n.dead_until <= now]
        if live:
            return live
        return [min(ring, key=lambda n: n.dead_until)]

    def _down(self, node: _Node) -> None:
        node.failures += 1
        node.dead_until = time.monotonic() + min(DEAD_MAX, DEAD_MIN * 2 ** (node.failures - 1))

    def close(self) -> None:
        for node in self._nodes:
            node.http.close()
