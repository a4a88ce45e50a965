"""Several bulk requests in flight: a pool of sender threads, values in, values out.

The shipper's loop puts :class:`Work` (a sequence number and a frozen
:class:`~.batch.Batch`) on the pool's queue, never more at once than its concurrency limit
allows (:mod:`.concurrency`); each sender thread owns a :class:`~.bulk.BulkSender` with a
transport of its own, takes one batch at a time, and puts back what happened, as values:

* an :class:`~.bulk.Attempt` per request, as it happens (the loop counts it, and the
  concurrency limit learns from its round-trip time and any push-back);
* a :class:`Done` per batch, carrying its :class:`~.bulk.Outcome`: settled, or what push-back
  refused handed back (the loop sends it again, as new :class:`Work`, when its limit allows);
* a :class:`~.errors.Crashed` if a sender thread met a bug (the loop stops the run).

Batches finish in any order; what that means for offsets is :mod:`.offsets`' business.
Nothing here is shared between threads but the two queues and the stop event.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass

from ..logger import AmeboLogger
from .batch import Batch
from .bulk import Attempt, BulkSender, Group, Outcome
from .errors import Crashed
from .pack import Packed

__all__ = ["Done", "SenderPool", "Work"]


@dataclass(frozen=True, slots=True)
class Work:
    """A batch to send, and its place in the order batches were handed out; sent again after
    push-back, how its documents were settled so far, those left (*groups*) and how many times
    it was handed back (*tries*)."""

    seq: int
    batch: Batch
    settled: bytearray | None = None
    groups: tuple[Group, ...] = ()
    tries: int = 0

    @property
    def pending(self) -> int:
        """Its documents not settled yet."""
        return len(self.batch) if self.settled is None else self.settled.count(0)


@dataclass(frozen=True, slots=True)
class Done:
    """A batch sent: every document settled, or what stopped it."""

    work: Work
    outcome: Outcome


Report = Attempt | Done | Crashed | Packed  # (the packer reports on the same queue)


class SenderPool:
    """Up to *size* sender threads, each with the :class:`BulkSender` *make_sender* builds for
    it (given the function it reports attempts with), started as the requests in flight need
    them (:meth:`grow_to`): a shipper near its cluster runs a few, not ``--max-in-flight``."""

    def __init__(
        self,
        size: int,
        make_sender: Callable[[Callable[[Attempt], None]], BulkSender],
        hard_stop: threading.Event,
        log: AmeboLogger,
    ) -> None:
        self.hard_stop = hard_stop
        self.log = log
        self._work: queue.SimpleQueue[Work | None] = queue.SimpleQueue()
        # What the loop waits on with a timeout, on the thread signal handlers run on: a
        # queue.Queue, not a SimpleQueue.  CPython 3.11's SimpleQueue.get(timeout=...), when a
        # signal handler outlasts what was left of the wait, waits again with a negative
        # timeout, which means for ever: the loop then sleeps until the next report, and a
        # follower with nothing in flight never sees its SIGTERM.  (Locks' own timed waits,
        # which Queue's are, check for that.)
        self.reports: queue.Queue[Report] = queue.Queue()
        self.size = size
        self._make_sender = make_sender
        self._senders: list[BulkSender] = []
        self._threads: list[threading.Thread] = []

    def grow_to(self, n: int) -> None:
        """Have *n* sender threads running (at most *size*): one for each request in flight."""
        while len(self._threads) < min(n, self.size):
            sender = self._make_sender(self.reports.put)
            thread = threading.Thread(
                target=self._run, args=(sender,), name=f"amebo-logship-sender-{len(self._threads)}", daemon=True
            )
            self._senders.append(sender)
            self._threads.append(thread)
            thread.start()

    def submit(self, work: Work) -> None:
        self._work.put(work)

    def _run(self, sender: BulkSender) -> None:
        try:
            while True:
                work = self._work.get()
                if work is None:
                    return
                if self.hard_stop.is_set():  # not sent: not acknowledged, read again next time
                    settled = work.settled if work.settled is not None else bytearray(len(work.batch))
                    self.reports.put(Done(work, Outcome(settled)))
                    continue
                outcome = sender.deliver(work.batch, work.settled, work.groups)
                if outcome.fatal is not None:
                    self.hard_stop.set()
                self.reports.put(Done(work, outcome))
                # An idle sender must not keep its last batch alive: with 32 of them, that
                # would be 32 request bodies held for nothing.
                del work, outcome
        except BaseException as exc:  # a bug: say so; the main loop stops the run
            self.log.critical("sender_crashed", exc_info=exc)
            self.reports.put(Crashed(exc, "sending", "sender_crashed"))

    def stop(self) -> None:
        """Ask every sender to finish (after the work already queued)."""
        for _ in self._threads:
            self._work.put(None)

    def alive(self) -> bool:
        return any(t.is_alive() for t in self._threads)

    def join(self, timeout: float) -> None:
        for thread in self._threads:
            thread.join(timeout / max(1, len(self._threads)))

    def unsent(self) -> list[Work]:
        """Work still queued (taken back at the end of a run that stopped early)."""
        out: list[Work] = []
        while True:
            try:
                item = self._work.get_nowait()
            except queue.Empty:
                return out
            if item is not None:
                out.append(item)

    def close(self) -> None:
        for sender in self._senders:
            sender.transport.close()
