"""The bulk sender: one batch, read item by item, until every item is settled or the run cannot
go on.  Everything it learns leaves it as values: an :class:`Attempt` per request, reported as
it happens (through *report*), and the batch's :class:`Outcome` at the end.  It changes no
shared state; the shipper's loop alone adds the values up (:class:`DeliveryStats`).

Two kinds of "permanent", kept apart:

* **Permanent for this line** (a 400 mapping conflict, a document larger than the server
  takes): the document goes to the dead-letter file with the reason and counts as settled.
* **Permanent for this run** (401; 403 ``security_exception``, per request or per item; a
  target Elasticsearch refuses: invalid name, missing or closed index): nothing past it is
  settled or dead-lettered; the :class:`Outcome` carries a :class:`Fatal` naming the cause
  and the fix, and the shipper stops with the documented exit code.

Per item: 2xx is delivered, or kept in the failure store when Elasticsearch says
``"failure_store": "used"`` (it could not index the document and kept it in the data
stream's ``::failures`` indices: settled, but counted apart and reported per batch); 409
(the ``_id`` exists: a replay) is a duplicate, settled; 429, 5xx and other 403s (a write
block) are retried with exponential backoff and jitter.  A whole request that fails
(connection refused, timeout, 429, 5xx...) is retried the same way, until the hard stop: the
shipper, which sees every sender's attempts, alone decides when a ``--once`` run gives up
(``--give-up-after``).  A sender made with *hand_back* (the shipper's) does not retry after
push-back (429, 503, a timeout, items refused with 429) itself: it hands back what is left
(:attr:`Outcome.again`), for the owner of the concurrency limit to send again.
413 splits the request in halves, down to one document, and remembers the size the server
refused.
"""

from __future__ import annotations

import random
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from .batch import Batch
from .transport import Answer, BulkTransport

__all__ = [
    "DEAD_LETTERED",
    "DELIVERED",
    "DUPLICATE",
    "DURATION_BUCKETS",
    "FAILURE_STORE",
    "Attempt",
    "Backoff",
    "BulkSender",
    "DeliveryStats",
    "Fatal",
    "Group",
    "Outcome",
    "PermanentFailures",
]

#: Upper bounds (seconds) of the bulk request duration histogram.
DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)

#: Item error types that say the target itself is unusable, not the line.
_TARGET_ERRORS = frozenset(
    {
        "invalid_index_name_exception",
        "index_not_found_exception",
        "index_closed_exception",
        "invalid_alias_name_exception",
    }
)


class PermanentFailures(Protocol):
    """Where documents Elasticsearch refused for good go (the dead-letter file, or a count)."""

    where: str

    def record(self, batch: Batch, refused: list[tuple[int, int, Any]]) -> None:
        """Keep (index, status, error) of each refused document; raise OSError if it cannot."""


@dataclass(frozen=True)
class Fatal:
    """Why the run cannot go on: *kind* is ``credentials``, ``privileges``, ``target`` or
    ``unreachable``; *message* names the cause and the fix."""

    kind: str
    message: str


#: What became of a document, as :attr:`Outcome.settled` records it (0: not settled).
DELIVERED, FAILURE_STORE, DEAD_LETTERED, DUPLICATE = 1, 2, 3, 4
_COUNTED = {
    DELIVERED: "delivered",
    FAILURE_STORE: "failure_store",
    DEAD_LETTERED: "dead_lettered",
    DUPLICATE: "duplicates",
}


#: Documents of a batch, by index: a ``range`` for the whole batch (and the halves a 413 splits
#: it into), a list for the documents to retry.  (A list of a batch's 5,000 indices, held by
#: each request in flight, was 170 KB of int objects: 22 MB at 128 requests in flight.)
Group = Sequence[int]


def _settle_all(settled: bytearray, group: Group, code: int) -> None:
    """Settle every document of *group* as *code*."""
    if isinstance(group, range) and group.step == 1:
        settled[group.start : group.stop] = bytes((code,)) * len(group)
    else:
        for i in group:
            settled[i] = code


def _counts(settled: bytearray, indices: Group | None = None) -> dict[str, int]:
    """How many documents were settled each way (only the ways that happened)."""
    codes = settled if indices is None else bytes(settled[i] for i in indices)
    found = {name: codes.count(code) for code, name in _COUNTED.items()}
    return {name: n for name, n in found.items() if n}


@dataclass(frozen=True)
class Outcome:
    """What became of one batch: per document 0 (not settled) or how it was settled
    (:data:`DELIVERED`, :data:`FAILURE_STORE`, :data:`DEAD_LETTERED`, :data:`DUPLICATE`),
    and what stopped it."""

    settled: bytearray
    fatal: Fatal | None = None
    #: What is still to send after push-back, handed back to the caller (a sender made with
    #: ``hand_back``): it sends it again when its own concurrency limit allows.
    again: tuple[Group, ...] = ()

    def counts(self) -> dict[str, int]:
        return _counts(self.settled)


@dataclass(frozen=True, slots=True)
class Attempt:
    """One bulk request and what it did, reported as it happens.

    *seconds* is its round-trip time; *status* the HTTP status (None: no answer); *ok* whether
    the cluster answered it 2xx; *retries* how many retries it caused, by cause (the request,
    or its items); *settled* how many documents it settled each way; *pressure* whether the
    cluster pushed back (429, 503, a timeout): the concurrency limit goes down; *failure*
    (kind, reason) when the request itself failed (kind ``auth``, ``http`` or ``connection``);
    *node* the node that answered, *unreachable* the nodes skipped on the way (with why)."""

    seconds: float
    at: float
    status: int | None
    ok: bool
    retries: dict[str, int] = field(default_factory=dict)
    settled: dict[str, int] = field(default_factory=dict)
    pressure: bool = False
    too_large: int = 0
    failure: tuple[str, str] | None = None
    node: str = ""
    unreachable: tuple[tuple[str, str], ...] = ()


@dataclass
class DeliveryStats:
    """The delivery counts of a run, added up from :class:`Attempt` values by the shipper's
    loop alone; others read copies (in snapshots)."""

    delivered: int = 0  # indexed (failure-store documents are not counted here)
    duplicates: int = 0
    dead_lettered: int = 0
    failure_store: int = 0  # kept in the data stream's failure store instead of being indexed
    too_large: int = 0
    retries: dict[str, int] = field(default_factory=lambda: {"429": 0, "5xx": 0, "connection": 0, "other": 0})
    bulk_requests: int = 0
    bulk_buckets: list[int] = field(default_factory=lambda: [0] * len(DURATION_BUCKETS))
    bulk_seconds_sum: float = 0.0
    last_delivery: float | None = None  # wall-clock time of the last settled item
    last_ok: float | None = None  # wall-clock time of the last request Elasticsearch answered 2xx
    last_failure: tuple[float, str, str] | None = None  # (time, kind, reason) of the last failed request
    failing_since: float | None = None  # wall-clock time of the first failure since the last 2xx

    def add(self, a: Attempt) -> None:
        """Count one request."""
        self.bulk_requests += 1
        self.bulk_seconds_sum += a.seconds
        for i, bound in enumerate(DURATION_BUCKETS):
            if a.seconds <= bound:
                self.bulk_buckets[i] += 1
                break
        for cause, n in a.retries.items():
            self.retries[cause] = self.retries.get(cause, 0) + n
        for name, n in a.settled.items():
            setattr(self, name, getattr(self, name) + n)
        if a.settled:
            self.last_delivery = a.at
        self.too_large += a.too_large
        if a.ok:
            self.last_ok = a.at
        if a.failure is not None:
            if not self.failing:
                self.failing_since = a.at
            self.last_failure = (a.at, *a.failure)
        if not self.failing:  # answers may come back out of order from several senders
            self.failing_since = None

    @property
    def failing(self) -> bool:
        """Whether the last request failed (Elasticsearch is unreachable or refusing now)."""
        failure = self.last_failure
        return failure is not None and (self.last_ok is None or failure[0] > self.last_ok)

    def copy(self) -> DeliveryStats:
        """A copy for readers in other threads."""
        out = DeliveryStats(**{k: getattr(self, k) for k in self.__dataclass_fields__})
        out.retries = dict(self.retries)
        out.bulk_buckets = list(self.bulk_buckets)
        return out


class Backoff:
    """Exponential backoff with jitter: about initial, 2x, 4x ... up to *maximum* seconds."""

    def __init__(self, initial: float = 0.5, maximum: float = 30.0) -> None:
        self.initial, self.maximum = initial, maximum
        self.failures = 0

    def next_delay(self) -> float:
        delay = self.after(self.failures)
        self.failures += 1
        return delay

    def after(self, failures: int) -> float:
        """The delay after *failures* failures in a row."""
        ceiling = min(self.maximum, self.initial * (2 ** min(failures, 30)))
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


def _error_type(error: Any) -> str:
    return str(error.get("type", "")) if isinstance(error, dict) else ""


def _error_reason(error: Any) -> str:
    if isinstance(error, dict):
        return str(error.get("reason") or error.get("type") or error)
    return str(error)


class BulkSender:
    """Sends batches to *target* (a data stream or an index) with ``create`` operations, over
    its own *transport*.  Used by one thread; *report* gets an :class:`Attempt` per request."""

    def __init__(
        self,
        transport: BulkTransport,
        target: str,
        dead_letter: PermanentFailures,
        *,
        report: Callable[[Attempt], None],
        backoff: Backoff,
        hard_stop: threading.Event,
        on_problem: Callable[[str, str, dict[str, Any]], None],
        where: str = "",
        hand_back: bool = False,
    ) -> None:
        self.transport = transport
        self.target = target
        self.dead_letter = dead_letter
        self.report = report
        self.backoff = backoff
        self.hard_stop = hard_stop
        self.on_problem = on_problem  # (level, event, fields)
        self.where = where  # the cluster's URLs, for messages
        # After push-back (429, 503, a timeout), what is left is handed back, not retried here:
        # the caller owns the concurrency limit, which decides when it goes again.
        self.hand_back = hand_back
        self.max_body: int | None = None  # learned from 413s

    # --- one request -----------------------------------------------------------------------
    def _request(self, body: bytes, gzipped: bool) -> tuple[Answer, float]:
        started = time.perf_counter()
        answer = self.transport.send(body, self.target, gzipped=gzipped)
        return answer, time.perf_counter() - started

    def _report(
        self,
        answer: Answer,
        seconds: float,
        *,
        retries: dict[str, int] | None = None,
        settled: dict[str, int] | None = None,
        too_large: int = 0,
    ) -> None:
        failure = None
        if answer.body is None and answer.status != 413:
            kind = "auth" if answer.status in (401, 403) else ("connection" if answer.status is None else "http")
            failure = (kind, answer.reason)
        pressure = answer.timeout or answer.status in (429, 503) or bool(retries and retries.get("429"))
        self.report(
            Attempt(
                seconds,
                time.time(),
                answer.status,
                answer.body is not None,
                retries or {},
                settled or {},
                pressure,
                too_large,
                failure,
                answer.node,
                answer.unreachable,
            )
        )

    def _wait(self) -> bool:
        """Back off; False when the hard stop came first (the run is stopping: a --once run
        gives up when the cluster accepted nothing for --give-up-after, the shipper decides)."""
        return not self.hard_stop.wait(self.backoff.next_delay())

    # --- one batch -------------------------------------------------------------------------------
    def deliver(self, batch: Batch, settled: bytearray | None = None, groups: Sequence[Group] = ()) -> Outcome:
        """Settle every document of *batch*, or say why the run cannot go on; with *settled*,
        a batch handed back before: only its *groups* are left to send.  With ``hand_back``,
        what push-back refused comes back in :attr:`Outcome.again`."""
        n = len(batch)
        if settled is None:
            settled = bytearray(n)
            work: deque[Group] = deque([range(n)]) if n else deque()
        else:  # (a copy: what it was given, the caller's value, stays as it was)
            settled = bytearray(settled)
            work = deque(groups)
        while work:
            group = work.popleft()
            body, gzipped, size = batch.request(group)  # (size: uncompressed, what 413 limits)
            if self.max_body is not None and size > self.max_body and len(group) > 1:
                half = len(group) // 2
                work.extendleft([group[half:], group[:half]])
                continue
            answer, seconds = self._request(body, gzipped)
            del body
            if answer.body is None:
                go_on, fatal = self._request_failed(batch, group, answer, seconds, size, settled, work)
                if go_on is None:  # push-back: handed back
                    return Outcome(settled, again=tuple(work))
                if not go_on:
                    return Outcome(settled, fatal)
                continue
            items = answer.body.get("items")
            count = len(items) if items is not None else answer.body.get("items_count")
            if count == len(group) and answer.body.get("errors") is False and items is None:  # the usual answer
                _settle_all(settled, group, DELIVERED)
                self._report(answer, seconds, settled={"delivered": len(group)})
                self.backoff.reset()
                continue
            if count != len(group) or items is None:
                self._report(answer, seconds, retries={"other": 1})
                self.on_problem(
                    "warning",
                    "bulk_request_failed",
                    {
                        "reason": f"the bulk response has {count} items for {len(group)} operations",
                        "retry_cause": "other",
                        "documents": len(group),
                    },
                )
                if not self._wait():
                    return Outcome(settled)
                work.appendleft(group)
                continue
            retry, retries, fatal = self._settle_items(batch, group, items, settled)
            self._report(answer, seconds, retries=retries, settled=_counts(settled, group))
            if fatal is not None:
                return Outcome(settled, fatal)
            if retry:
                self.on_problem("warning", "documents_retried", {"documents": len(retry)})
                if self.hand_back and retries.get("429"):  # push-back, item by item
                    work.appendleft(retry)
                    return Outcome(settled, again=tuple(work))
                if not self._wait():
                    return Outcome(settled)
                work.appendleft(retry)
            else:
                self.backoff.reset()
        return Outcome(settled)

    def _request_failed(
        self,
        batch: Batch,
        group: Group,
        answer: Answer,
        seconds: float,
        size: int,
        settled: bytearray,
        work: deque[Group],
    ) -> tuple[bool | None, Fatal | None]:
        """Handle a request Elasticsearch (or a proxy) did not answer 2xx: (go on?, why not);
        None: push-back, the group handed back (``hand_back``)."""
        status = answer.status
        if status == 401:
            self._report(answer, seconds)
            return False, Fatal(
                "credentials",
                f"Elasticsearch at {self.where} refused the credentials (HTTP 401): check "
                "--api-key (AMEBO_LOGSHIP_API_KEY) or --username/--password",
            )
        if status == 403 and answer.error_type == "security_exception":
            self._report(answer, seconds)
            return False, Fatal(
                "privileges",
                f"Elasticsearch refused to write to {self.target} ({answer.reason}): grant "
                f"the create_doc and auto_configure index privileges on {self.target} "
                "(or on logs-amebo-*) to these credentials",
            )
        if status == 413:
            dead = self._too_large(batch, group, size, settled, work)
            self._report(answer, seconds, settled=_counts(settled, dead) if dead else None, too_large=len(dead))
            return True, None
        if answer.error_type in _TARGET_ERRORS or status == 404:
            self._report(answer, seconds)
            return False, Fatal("target", f"Elasticsearch refused the target {self.target}: {answer.reason}")
        cause = _cause(status)
        self._report(answer, seconds, retries={cause: 1})
        self.on_problem(
            "error" if status in (400, 403, 404) else "warning",
            "bulk_request_failed",
            {"reason": answer.reason, "retry_cause": cause, "documents": len(group)},
        )
        work.appendleft(group)
        if self.hand_back and (answer.timeout or status in (429, 503)):
            return None, None
        if not self._wait():
            return False, None
        return True, None

    def _too_large(self, batch: Batch, group: Group, size: int, settled: bytearray, work: deque[Group]) -> list[int]:
        """HTTP 413: split the request; a single document over the limit is dead-lettered (its
        index is returned, when it was)."""
        limit = size - 1
        if self.max_body is None or limit < self.max_body:
            self.max_body = limit
            self.on_problem(
                "warning",
                "bulk_request_too_large",
                {
                    "bytes": size,
                    "reason": f"the server refused a {size}-byte request (HTTP 413): requests are split "
                    f"from now on; set --batch-bytes below {size} (or raise the server's "
                    "http.max_content_length / the proxy's body limit)",
                },
            )
        if len(group) > 1:
            half = len(group) // 2
            work.extendleft([group[half:], group[:half]])
            return []
        [i] = group
        error = {
            "type": "request_entity_too_large",
            "reason": f"this document alone is a {size}-byte request, more than the server accepts (HTTP 413)",
        }
        self._dead_letter(batch, [(i, 413, error)], settled, work)
        return [i] if settled[i] else []

    def _settle_items(
        self, batch: Batch, group: Group, items: list[Any], settled: bytearray
    ) -> tuple[list[int], dict[str, int], Fatal | None]:
        """Settle what the items say; (documents to retry, retries by cause, why the run stops)."""
        retry: list[int] = []
        retries: dict[str, int] = {}
        dead: list[tuple[int, int, Any]] = []
        in_failure_store: list[int] = []
        for i, item in zip(group, items, strict=True):
            result = next(iter(item.values())) if isinstance(item, dict) and item else {}
            if not isinstance(result, dict):
                result = {}
            status = result.get("status", 0)
            error = result.get("error")
            if 200 <= status < 300:
                if result.get("failure_store") == "used":
                    settled[i] = FAILURE_STORE
                    in_failure_store.append(i)
                else:
                    settled[i] = DELIVERED
            elif status == 409:
                settled[i] = DUPLICATE
            elif status == 403 and _error_type(error) == "security_exception":
                return (
                    [],
                    retries,
                    Fatal(
                        "privileges",
                        f"Elasticsearch refused to write to {self.target} "
                        f"({_error_reason(error)}): grant the create_doc and auto_configure "
                        f"index privileges on {self.target} to these credentials",
                    ),
                )
            elif _error_type(error) in _TARGET_ERRORS:
                return (
                    [],
                    retries,
                    Fatal("target", f"Elasticsearch refused the target {self.target}: {_error_reason(error)}"),
                )
            elif status == 429 or status >= 500 or status in (0, 403, 408):
                retry.append(i)
                cause = _cause(status or None)
                retries[cause] = retries.get(cause, 0) + 1
                if status == 403:
                    self.on_problem(
                        "error",
                        "documents_blocked",
                        {"reason": _error_reason(error), "action": "retrying until the block is lifted"},
                    )
            else:
                dead.append((i, status, error))
        if in_failure_store:
            self.on_problem(
                "warning", "documents_in_failure_store", self._failure_store_fields(batch, in_failure_store)
            )
        if dead:
            self._dead_letter(batch, dead, settled, None, retry)
        retry.sort()
        return retry, retries, None

    def _failure_store_fields(self, batch: Batch, docs: list[int]) -> dict[str, Any]:
        """The record of documents Elasticsearch kept in the failure store: how many, the first
        one's file, offset and id, and the query that shows why (the bulk answer does not)."""
        first = docs[0]
        doc_id = batch.document_id(first)
        return {
            "documents": len(docs),
            "reason": "Elasticsearch could not index them (a mapping conflict or an ingest pipeline failure) and "
            f"kept them in the data stream's failure store, not in {self.target}: fix the mapping or the line's "
            "producer; the error of each is in the failure store",
            "query": f'FROM {self.target}::failures | WHERE document.id == "{doc_id}"',
            "log.file.path": batch.source(first).path,
            "log.offset": batch.offsets[first],
        }

    def _dead_letter(
        self,
        batch: Batch,
        dead: list[tuple[int, int, Any]],
        settled: bytearray,
        work: deque[Group] | None,
        retry: list[int] | None = None,
    ) -> None:
        try:
            self.dead_letter.record(batch, dead)
        except OSError as exc:  # not kept: they stay pending, nothing is lost
            self.on_problem(
                "error", "dead_letter_write_failed", {"error.message": str(exc), "file.path": self.dead_letter.where}
            )
            pending = [i for i, _, _ in dead]
            if retry is not None:
                retry.extend(pending)
            elif work is not None:
                self.hard_stop.wait(self.backoff.next_delay())
                work.appendleft(pending)
            return
        for i, _, _ in dead:
            settled[i] = DEAD_LETTERED
        self.on_problem(
            "warning",
            "documents_dead_lettered",
            {"documents": len(dead), "first_reason": _error_reason(dead[0][2]), "file.path": self.dead_letter.where},
        )
