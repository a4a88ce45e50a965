"""The shipping pipeline: discover -> read -> batch -> bulk -> outcomes -> offsets.

Threads share nothing mutable; values cross between them on queues:

* **The main loop** owns the reader (:class:`~.discover.Discovery`), the batcher, the offsets,
  the concurrency limit and the delivery counts.  It scans for files on its own clock (also
  while sending is blocked), reads while the pipeline has room, and feeds what the reader
  hands out (values: lines, file events, notices) on: lines to the batcher, file events and
  how far lines reach to the offsets, notices to the log.  It hands frozen batches to the
  senders, never more at once than the concurrency limit, and applies what comes back
  (values: an :class:`~.bulk.Attempt` per request, a :class:`~.senders.Done` per batch) to
  the counts, the limit and the offsets, which alone use the state store.
* **The sender threads** (:mod:`.senders`, up to ``--max-in-flight``) each own a bulk sender
  and a transport: a batch in, values out.

**Several requests in flight, and how many is learned.**  :mod:`.concurrency` starts at eight
requests (``ShipOptions.initial_in_flight``) and grows while the round-trip time stays near
its baseline and work waits; 429s, 503s, timeouts and a rising round-trip time cut it.  What
push-back refused comes back from the sender (:attr:`~.bulk.Outcome.again`) and goes again
after a backoff, keeping its place under the limit meanwhile, once fewer requests are out than
the limit: so a cut limit holds for the retries too.
Batches complete in any order; a file's offset only advances over the contiguous prefix of
settled batches (:mod:`.offsets`).

**Latency first.**  A partial batch goes out as soon as nothing is in flight; while requests
are in flight the next batch keeps filling, up to ``--batch-size``/``--batch-bytes``, and
leaves when a request may be sent (or after ``--flush-interval`` at most).

**Memory stays bounded.**  Reading goes on while the batches held (waiting to be sent, at the
packer, in flight) are at most ``--max-in-flight`` (a read, of 4 MiB at most, may add one or
two), whatever the limit is now: while it is low, reading runs that far ahead, so a limit that
doubles finds its batches ready (the reading is done while the first round trips are out); as
it grows, requests in flight take the place of batches waiting.  Those waiting take two
``--batch-bytes`` at most as they are held; each is at most ``--batch-bytes``.  When round
trips take 0.2 s or more (``--compress auto``, :mod:`.pack`), batches are held gzipped, a
fifteenth of the size: two packing threads compress each as it is frozen, beside the reading,
and reading waits while one is at work (packing is several times faster than reading: a
plain body waiting for them was 8 MB more peak memory for nothing).

Everything else (metrics, ``/health``, the progress bar, the summary) reads
:meth:`Shipper.snapshot`, a value published by the main loop; nothing reads the internals.
"""

from __future__ import annotations

import heapq
import os
import queue
import signal
import socket
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from ..logger import AmeboLogger
from .batch import Batch, Batcher, ReadStats
from .bulk import Attempt, Backoff, BulkSender, DeliveryStats, Fatal, Outcome
from .concurrency import DEFAULT_INITIAL, DEFAULT_MAXIMUM, AdaptiveConcurrency
from .deadletter import DeadLetter
from .discover import Discovery, Waiting
from .errors import EXIT_CONFIG, Crashed, OperatorError
from .identity import How
from .items import Chunk, Framed, Item, LongLine, Notice, Opened, Unwrapped
from .offsets import Ack, Offsets
from .pack import Packed, Packer, worth_gzipping
from .senders import Done, SenderPool, Work
from .state import StateError
from .transport import BulkTransport

__all__ = ["FileState", "ShipOptions", "Shipper", "Snapshot", "Summary"]

POLL_INTERVAL = 0.05
PACKER_BACKLOG = 0  # batches at the packers beyond which reading waits for them
SNAPSHOT_EVERY = 0.2


@dataclass
class ShipOptions:
    patterns: list[str]
    target: str = "logs-amebo-default"
    state_dir: Path = field(default_factory=lambda: Path("~/.local/state/amebo-logship").expanduser())
    dead_letter: Path | None = None
    excludes: list[str] = field(default_factory=list)
    batch_size: int = 10000
    batch_bytes: int = 10 * 1024 * 1024
    flush_interval: float = 1.0
    max_line_bytes: int = 1024 * 1024
    scan_interval: float = 1.0
    shutdown_timeout: float = 30.0
    close_inactive: float = 300.0
    max_in_flight: int = DEFAULT_MAXIMUM
    compress: str = "auto"  # --compress: auto (gzip when round trips are long), gzip, off
    initial_in_flight: int = DEFAULT_INITIAL  # --initial-in-flight: where the learned limit starts (at most the max)
    backoff_initial: float = 0.5
    backoff_max: float = 30.0
    once: bool = False
    wait_for_files: bool = False
    give_up_after: float | None = None  # --once: stop when Elasticsearch accepts nothing this long
    max_open_files: int | None = None
    dry_run: bool = False
    file_format: str = "auto"  # json, docker, cri, or auto: per file, from its first line
    containers: list[str] = field(default_factory=list)  # container-name globs (container logs)
    host_name: str = field(default_factory=socket.gethostname)
    where: str = ""  # the cluster's URLs, for messages

    @classmethod
    def from_params(cls, patterns: list[str], params: dict[str, Any], where: str = "") -> ShipOptions:
        """The options of ``amebo-logship ship``, from click's parameters."""
        return cls(
            patterns=list(patterns),
            target=params["index"] or params["data_stream"] or "logs-amebo-default",
            state_dir=params["state_dir"],
            dead_letter=params["dead_letter"],
            excludes=list(params["excludes"]),
            batch_size=params["batch_size"],
            batch_bytes=params["batch_bytes"],
            flush_interval=params["flush_interval"],
            max_line_bytes=params["max_line_bytes"],
            scan_interval=params["scan_interval"],
            shutdown_timeout=params["shutdown_timeout"],
            close_inactive=params["close_inactive"],
            backoff_initial=params["backoff_initial"],
            backoff_max=params["backoff_max"],
            once=params["once"] or params["dry_run"],
            wait_for_files=params["wait_for_files"],
            give_up_after=params["give_up_after"],
            max_open_files=params["max_open_files"],
            max_in_flight=params.get("max_in_flight") or DEFAULT_MAXIMUM,
            initial_in_flight=params.get("initial_in_flight") or DEFAULT_INITIAL,
            compress=params.get("compress") or "auto",
            dry_run=params["dry_run"],
            file_format=params.get("file_format", "auto"),
            containers=list(params.get("containers") or ()),
            host_name=params.get("host_name") or socket.gethostname(),
            where=where,
        )


@dataclass(frozen=True)
class FileState:
    path: str
    uid: str
    size: int
    committed: int
    partial: int  # bytes of a last line still waiting for its newline

    @property
    def lag(self) -> int:
        return max(0, self.size - self.committed)

    @property
    def deliverable(self) -> int:
        return max(0, self.size - self.committed - self.partial)


@dataclass(frozen=True)
class NodeState:
    """What the last request to a node said of it."""

    url: str
    up: bool
    reason: str = ""
    since: float = 0.0  # wall-clock time it was last found up or down


@dataclass(frozen=True)
class Snapshot:
    """What the shipper has done and holds, at one moment: the only view others get."""

    started_at: float
    read: ReadStats
    delivery: DeliveryStats
    files: tuple[FileState, ...]
    waiting: tuple[Waiting, ...] = ()
    skipped: tuple[str, ...] = ()
    in_flight: int = 0  # bulk requests out now
    concurrency_limit: int = 1  # how many may be, as learned
    max_in_flight: int = 1  # --max-in-flight: the most it may learn
    nodes: tuple[NodeState, ...] = ()

    @property
    def lag_bytes(self) -> int:
        return sum(f.lag for f in self.files)

    @property
    def deliverable_bytes(self) -> int:
        return sum(f.deliverable for f in self.files)


@dataclass
class Summary:
    """What a run did, and how it ended."""

    snapshot: Snapshot
    seconds: float
    ended: str  # "done", "stopped" (by a signal), "fatal"
    fatal: Fatal | None = None
    state_error: StateError | None = None
    signal: int | None = None
    unsettled: int = 0  # documents read but not acknowledged when the run ended
    left_bytes: int = 0  # bytes of complete lines in matched files not shipped
    dead_letter: str = ""
    dry_run: bool = False
    target: str = ""
    resumed_bytes: int = 0  # bytes skipped because saved offsets said they were shipped before
    resumed_files: int = 0
    state_dir: str = ""

    @property
    def partial_lines(self) -> dict[str, int]:
        return {f.path: f.partial for f in self.snapshot.files if f.partial}

    def waiting(self, *reasons: str) -> list[Waiting]:
        return [w for w in self.snapshot.waiting if w.reason in reasons]


class Shipper:
    """Runs one shipping session; ``run()`` returns its :class:`Summary`.

    *transports* makes the transport each sender thread sends with (its own, so that nothing
    of it is shared between threads)."""

    def __init__(
        self,
        options: ShipOptions,
        transports: Callable[[], BulkTransport],
        log: AmeboLogger,
        progress: Callable[[Snapshot], None] | None = None,
    ) -> None:
        self.options = options
        self.log = log
        self.progress = progress
        self.offsets = Offsets.open(options.state_dir, dry_run=options.dry_run)
        self.stopping = False  # (the loop's own: set from the stop requests it reads)
        self.hard_stop = threading.Event()
        self._stop_requests: list[int | None] = []  # appended to by request_stop(), from anywhere
        self._stop_deadline: float | None = None
        self.read_stats = ReadStats()
        self.delivery = DeliveryStats()  # added up here, from the senders' values
        # when (monotonic) the cluster began to accept nothing: --once gives up --give-up-after later
        self.failing_at: float | None = None
        self.resumed: dict[str, int] = {}  # generation uid -> the offset this run began reading it at
        # A dry run writes nothing under the state directory (its transport refuses nothing).
        dead_path = (
            Path(os.devnull) if options.dry_run else (options.dead_letter or (options.state_dir / "dead-letter.ndjson"))
        )
        try:
            self.dead_letter = DeadLetter(dead_path)
        except OSError as exc:
            self.offsets.close()
            raise OperatorError(
                EXIT_CONFIG,
                f"cannot open the dead-letter file {dead_path}: {exc.strerror}: give "
                "a writable path with --dead-letter",
            ) from None
        self.discovery = Discovery(
            options.patterns,
            self.offsets.view(),
            excludes=options.excludes,
            max_line_bytes=options.max_line_bytes,
            close_inactive=options.close_inactive,
            max_open=options.max_open_files,
            once=options.once,
            file_format=options.file_format,
            containers=options.containers,
        )
        self.ready: deque[Batch] = deque()
        # batches push-back handed back, by when they may go again: (due, seq, work)
        self.again: list[tuple[float, int, Work]] = []
        self.push_back = Backoff(options.backoff_initial, options.backoff_max)
        self.batcher = Batcher(
            self._emitted,
            host_name=options.host_name,
            batch_size=options.batch_size,
            batch_bytes=options.batch_bytes,
            max_line_bytes=options.max_line_bytes,
            stats=self.read_stats,
        )
        # A dry run prints the requests in order: one at a time.
        cap = 1 if options.dry_run else max(1, options.max_in_flight)
        self.concurrency = AdaptiveConcurrency(cap, initial=options.initial_in_flight)

        def make_sender(report: Callable[[Attempt], None]) -> BulkSender:
            return BulkSender(
                transports(),
                options.target,
                self.dead_letter,
                report=report,
                backoff=Backoff(options.backoff_initial, options.backoff_max),
                hard_stop=self.hard_stop,
                on_problem=self._problem,
                where=options.where,
                hand_back=True,
            )

        self.pool = SenderPool(cap, make_sender, self.hard_stop, log)
        # A dry run prints what it would send: plain.
        self.packer = None if options.dry_run or options.compress == "off" else Packer(self.pool.reports.put, log)
        self.packing = 0  # batches at the packer
        self._packed: dict[int, Batch] = {}  # back from the packer before one emitted earlier
        self._emitted_n = self._ready_n = 0  # batches emitted; batches put in ready, in order
        self._seq = 0
        self.in_flight = 0
        self.in_flight_docs = 0  # the documents of those requests (and of those queued for a sender)
        self.unsettled = 0
        self.nodes: dict[str, NodeState] = {}
        self.fatal: Fatal | None = None
        self.state_error: StateError | None = None
        self.signal: int | None = None
        self.timed_out = False
        self.started_at = time.time()
        self._snapshot = Snapshot(self.started_at, ReadStats(), DeliveryStats(), ())
        self._snapshot_at = 0.0

    # --- control ---------------------------------------------------------------------------
    def request_stop(self, signum: int | None = None) -> None:
        """Ask the run to stop: the first request stops reading and delivers what was read
        within the shutdown timeout; a second stops at once (offsets stay where they were:
        nothing is lost).

        Safe from a signal handler and from any thread: it only records the request, which
        the loop acts on within :data:`POLL_INTERVAL`.  A handler that logged, took a lock
        or started a thread could meet the loop holding that same lock or stream; and
        whatever the handler costs, the loop's timed wait must still end (see
        :class:`~.senders.SenderPool`'s queue of reports)."""
        self._stop_requests.append(signum)

    def _heed_stop_requests(self) -> None:
        """Act on the stop requests made since the last look, and on the shutdown timeout."""
        while self._stop_requests:
            signum = self._stop_requests.pop(0)  # (append and pop are each atomic)
            if self.stopping:
                self.log.info("stop_now_requested", action="stopping at once; offsets are safe")
                self.hard_stop.set()
                continue
            self.stopping = True
            self.signal = signum
            self.log.info(
                "stop_requested",
                **({"signal": signal.Signals(signum).name} if signum else {}),
                shutdown_timeout=self.options.shutdown_timeout,
                action="delivering what was read; a second signal stops at once (offsets are safe)",
            )
            if self.delivery.failing:  # nothing can be delivered now: do not wait for it
                self.hard_stop.set()
            else:
                self._stop_deadline = time.monotonic() + self.options.shutdown_timeout
        if self._stop_deadline is not None and time.monotonic() >= self._stop_deadline and not self.hard_stop.is_set():
            self.timed_out = True
            self.hard_stop.set()

    def _problem(self, level: str, event: str, fields: dict[str, Any]) -> None:
        getattr(self.log, level)(event, **fields)

    def snapshot(self) -> Snapshot:
        """The latest published view of the run (safe to call from any thread)."""
        return self._snapshot

    def _publish(self, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._snapshot_at < SNAPSHOT_EVERY:
            return
        self._snapshot_at = now
        committed = self.offsets.committed
        files = tuple(
            FileState(r.source.path, r.uid, r.size, committed(r.uid), r.partial_bytes if r.at_eof else 0)
            for r in self.discovery.open_files()
        )
        self._snapshot = Snapshot(
            self.started_at,
            replace(self.read_stats),
            self.delivery.copy(),
            files,
            tuple(self.discovery.waiting()),
            tuple(self.discovery.skipped()),
            self.in_flight,
            self.concurrency.limit,
            self.concurrency.maximum,
            tuple(self.nodes.values()),
        )
        if self.progress is not None:
            self.progress(self._snapshot)

    def _feed(self, items: list[Item]) -> int:
        """What the reader handed out, fed on: lines to the batcher (and how far they reach to
        the offsets), file events to the offsets, notices to the log.  The lines fed."""
        lines = 0
        for item in items:
            if isinstance(item, (Chunk, Framed, LongLine, Unwrapped)):
                self.offsets.handed(item.source.uid, item.end)
                self.batcher.add(item)
                lines += 1
            elif isinstance(item, Notice):
                getattr(self.log, item.level)(item.event, **item.fields)
            else:
                if isinstance(item, Opened) and item.decision.how is not How.HELD:
                    # where this run first read the generation from: past 0, an earlier run shipped it
                    self.resumed.setdefault(item.source.uid, item.decision.position)
                self.offsets.apply(item)
        return lines

    # --- the main loop -------------------------------------------------------------------------
    def run(self) -> Summary:
        started = time.monotonic()
        opts = self.options
        self._feed(self.discovery.scan())
        if not self.discovery.tracking() and not opts.wait_for_files:
            self.close()
            raise OperatorError(
                EXIT_CONFIG,
                f"no files match {' '.join(opts.patterns)}: check the patterns (quote them so the shell does "
                "not expand them), or pass --wait-for-files to wait for files to appear",
            )
        if self.packer is not None:
            self.packer.start()
        try:
            ended = self._loop()
        except BaseException:
            self.hard_stop.set()
            self.pool.stop()
            if self.packer is not None:
                self.packer.stop()
            self.close()
            raise
        self._finish()
        self._publish(force=True)
        summary = Summary(
            self._snapshot,
            time.monotonic() - started,
            ended,
            self.fatal,
            self.state_error,
            self.signal,
            self.unsettled,
            self._left_bytes(),
            str(self.dead_letter.path),
            opts.dry_run,
            opts.target,
            sum(self.resumed.values()),
            sum(1 for start in self.resumed.values() if start),
            str(opts.state_dir),
        )
        self.close()
        return summary

    def _loop(self) -> str:
        opts = self.options
        last_scan = time.monotonic()
        budget = min(4 << 20, max(opts.batch_bytes, 1 << 16))
        while True:
            self._heed_stop_requests()
            self._take_reports(0.0)
            self._save_offsets()  # (what the last reports committed, once the last write is old enough)
            self._give_up_when_due()
            if self.fatal is not None or self.state_error is not None:
                return "fatal"
            if self.hard_stop.is_set():
                return "stopped"
            now = time.monotonic()
            if self.stopping:
                self.batcher.flush()
                self._dispatch()
                if self.in_flight == 0 and not self.ready and not self.packing and not self.again:
                    return "stopped"
                self._publish()
                self._take_reports(POLL_INTERVAL)
                continue
            if now - last_scan >= opts.scan_interval:
                self._feed(self.discovery.scan())
                self._feed(self.discovery.retire())
                last_scan = now
            read = 0
            if self._room():  # (batches enough waiting to be sent pause reading)
                read = self._feed(self.discovery.poll(budget))
            if (
                self.batcher.pending()
                and not self.ready
                and not self.packing
                and (
                    self.in_flight == 0
                    or now - self.batcher.batch.created >= opts.flush_interval
                    or (opts.once and not read and self.discovery.all_read())
                )
            ):
                self.batcher.flush()  # nothing is in flight (or the batch is old, or the last): send now
            self._dispatch()
            if not read and opts.once:
                self._feed(self.discovery.retire())
                if self._once_done():
                    return "done"
            self._publish()
            if not read or not self._room():
                self._take_reports(POLL_INTERVAL)

    def _room(self) -> bool:
        """Whether reading may go on: the batches held (waiting to be sent, at the packer or
        back from it before an earlier one, in flight) are at most --max-in-flight, whatever the
        limit is now (while it is low and the round trips long, reading goes on, and the
        batches are ready when it grows; as requests take their place, reading waits: the most
        held is the same at any limit), those waiting in less than two batches' worth of bytes
        as they are held (gzipped, when packed), and nothing is at the packers (a batch there
        is not compressed yet: reading on would hold its plain body and the next one's)."""
        held = len(self.ready) + len(self._packed) + self.packing + self.in_flight + len(self.again)
        return (
            self.packing <= PACKER_BACKLOG
            and held <= self.concurrency.maximum
            and sum(b.nbytes for b in self.ready) < 2 * self.options.batch_bytes
        )

    def _emitted(self, batch: Batch) -> None:
        """A batch the batcher froze: to the packer (which hands it back as :class:`Packed`,
        in order), or straight to the queue of batches ready to send."""
        if self.packer is None:
            self.ready.append(batch)
            return
        self.packing += 1
        self._emitted_n += 1
        self.packer.submit(self._emitted_n, batch, worth_gzipping(self.options.compress, self.concurrency.baseline))

    def _unpacked(self, packed: Packed) -> None:
        """A batch back from the packer: to ready, in the order the batches were emitted."""
        self.packing -= 1
        self._packed[packed.n] = packed.batch
        while self._ready_n + 1 in self._packed:
            self._ready_n += 1
            self.ready.append(self._packed.pop(self._ready_n))

    def _once_done(self) -> bool:
        return (
            self.discovery.all_read()
            and not self.batcher.pending()
            and not self.ready
            and not self.packing
            and self.in_flight == 0
            and not self.again
        )

    def _dispatch(self) -> None:
        """Hand batches to the senders while the limit allows.  A batch push-back handed back
        keeps its place under the limit while it waits out its backoff (as a request would,
        retried by its sender), and goes again, first, once it is due and the requests out are
        fewer than the limit (which the push-back may have cut below them); a new batch goes
        when those out and those waiting again are fewer."""
        limit = self.concurrency.limit
        again = self.again
        now = time.monotonic() if again else 0.0
        while True:
            if again and again[0][0] <= now and self.in_flight < limit:
                work = heapq.heappop(again)[2]
            elif self.ready and self.in_flight + len(again) < limit:
                batch = self.ready.popleft()
                self._seq += 1
                self.offsets.sent(self._seq, batch.source_ends)
                work = Work(self._seq, batch)
            else:
                return
            self.in_flight += 1
            self.in_flight_docs += work.pending
            self.pool.grow_to(self.in_flight)
            self.pool.submit(work)
            self.concurrency.dispatched(self.in_flight + len(again))

    def _take_reports(self, wait: float) -> None:
        """Apply what the senders report (attempts and finished batches); wait up to *wait*
        seconds for the first."""
        reports = self.pool.reports
        timeout: float | None = wait
        while True:
            try:
                item = reports.get(timeout=timeout) if timeout else reports.get_nowait()
            except queue.Empty:
                return
            timeout = None
            if isinstance(item, Attempt):
                self._attempted(item)
            elif isinstance(item, Done):
                self._done(item)
            elif isinstance(item, Packed):
                self._unpacked(item)
            elif isinstance(item, Crashed):  # a sender or packing thread crashed: a bug
                raise RuntimeError(item.message) from item.error

    def _attempted(self, attempt: Attempt) -> None:
        was_failing, since = self.delivery.failing, self.delivery.failing_since
        self.delivery.add(attempt)
        if not self.delivery.failing:
            self.failing_at = None
        elif not was_failing:
            self.failing_at = time.monotonic()
        if self.delivery.failing and not was_failing and self.delivery.last_failure is not None:
            self.log.warning(
                "elasticsearch_waiting",
                reason=self.delivery.last_failure[2],
                kind=self.delivery.last_failure[1],
                detail="shipping waits and retries; nothing is lost: lines are read again from their offsets",
            )
        elif was_failing and not self.delivery.failing and since is not None:
            self.log.info("elasticsearch_answering", waited_seconds=round(max(0.0, attempt.at - since), 3))
        concurrency = self.concurrency
        before = concurrency.limit
        concurrency.observe(attempt, time.monotonic())
        if concurrency.limit != before:
            self.log.debug(
                "concurrency_changed",
                limit=concurrency.limit,
                previous=before,
                rtt_baseline_seconds=round(concurrency.baseline or 0.0, 4),
                push_back=attempt.pressure,
            )
        for url, reason in attempt.unreachable:
            self._node(url, False, reason, attempt.at)
        if attempt.status is not None and attempt.node:
            self._node(attempt.node, True, "", attempt.at)

    def _node(self, url: str, up: bool, reason: str, at: float) -> None:
        known = self.nodes.get(url)
        if known is None or known.up != up:
            if known is not None or not up:
                getattr(self.log, "info" if up else "warning")(
                    "elasticsearch_node_up" if up else "elasticsearch_node_down",
                    **{"url.full": url},
                    reason=reason or "it answers again",
                    action="its requests go to it again"
                    if up
                    else "skipped until it answers; the others take its requests",
                )
            self.nodes[url] = NodeState(url, up, reason, at)
        elif reason != known.reason:
            self.nodes[url] = NodeState(url, up, reason, known.since)

    def _done(self, done: Done) -> None:
        work, outcome = done.work, done.outcome
        self.in_flight -= 1
        self.in_flight_docs -= work.pending
        self.offsets.live = {
            "in_flight": str(self.in_flight),
            "concurrency_limit": str(self.concurrency.limit),
            "max_in_flight": str(self.concurrency.maximum),
        }
        if outcome.again and not self.hard_stop.is_set():
            self._hand_back(work, outcome)
            return
        missing = outcome.settled.count(0)
        if missing:
            self.unsettled += missing
        try:
            self.offsets.acknowledge(Ack(work.seq, work.batch.settled_ends(outcome.settled), outcome.counts()))
        except StateError as exc:
            self._not_saved(exc)
        if outcome.fatal is not None and self.fatal is None:
            self.fatal = outcome.fatal
            self.log.error(
                "shipping_cannot_continue",
                reason=outcome.fatal.message,
                kind=outcome.fatal.kind,
                unsettled_documents=missing,
            )
        elif missing and not self.hard_stop.is_set():
            self.hard_stop.set()

    def _hand_back(self, work: Work, outcome: Outcome) -> None:
        """What push-back refused: sent again after a backoff, when the limit allows (so a
        cluster that said "too much" sees the limit, not every refused request coming back on
        its own)."""
        due = time.monotonic() + self.push_back.after(work.tries)
        again = Work(work.seq, work.batch, outcome.settled, outcome.again, work.tries + 1)
        heapq.heappush(self.again, (due, work.seq, again))

    def _give_up_when_due(self) -> None:
        """--once: the run stops when the cluster has accepted nothing for --give-up-after
        (decided here alone, for every sender: the hard stop cuts their backoffs short)."""
        give_up = self.options.give_up_after
        since = self.failing_at
        if not self.options.once or give_up is None or since is None or self.fatal is not None:
            return
        if time.monotonic() - since >= give_up:
            last = self.delivery.last_failure[2] if self.delivery.last_failure else "no answer"
            self.fatal = Fatal(
                "unreachable",
                f"Elasticsearch at {self.options.where or 'the given --es-url'} did not accept documents for "
                f"{give_up:g}s (last: {last}); nothing is lost: run again to resume (or raise --give-up-after)",
            )
            self.log.error("shipping_cannot_continue", reason=self.fatal.message, kind=self.fatal.kind)

    def _save_offsets(self, *, now: bool = False) -> None:
        """Write the offsets committed since the last write, when that is due (or *now*)."""
        if self.state_error is not None:  # (said once; the run is ending)
            return
        try:
            self.offsets.save(now=now)
        except StateError as exc:
            self._not_saved(exc)

    def _not_saved(self, exc: StateError) -> None:
        self.state_error = exc
        self.log.error("offsets_not_saved", **{"error.message": str(exc)})

    def _finish(self) -> None:
        """Stop the senders; settle what they still report; say what was not acknowledged."""
        self.batcher.flush()
        self.pool.stop()
        if self.packer is not None:
            self.packer.stop()
            self.packer.join(5.0)
        if self.fatal is not None or self.state_error is not None:
            self.hard_stop.set()
        grace: float | None = None
        while self.pool.alive():
            self.pool.join(0.1)
            self._heed_stop_requests()
            self._drain_reports()
            self._publish()
            if self.delivery.failing and not self.hard_stop.is_set():
                # the failures that were on their way when the stop came: nothing can be
                # delivered now, so do not wait out the shutdown timeout for it
                self.hard_stop.set()
            if self.hard_stop.is_set():  # a request may hang up to its timeout: do not wait for it
                grace = grace or time.monotonic() + 2.0
                if time.monotonic() > grace:
                    break
        self._drain_reports()
        self.packing = 0
        for batch in self.ready:
            self.unsettled += len(batch)
        self.ready.clear()
        for _, _, work in self.again:
            self.unsettled += work.pending
        self.again.clear()
        if self.in_flight:  # queued for a sender, or on their way and abandoned after the grace
            self.pool.unsent()  # (let the queued ones go)
            self.unsettled += self.in_flight_docs
            self.in_flight = self.in_flight_docs = 0
        if self.unsettled and self.fatal is None:
            self.log.warning(
                "shutdown_timeout_reached" if self.timed_out else "documents_unsettled",
                unsettled_documents=self.unsettled,
                reason="these lines were not acknowledged; they are read again next time",
            )
        self._save_offsets(now=True)  # (before the summary: an exit 0 means every offset is saved)
        if self.state_error is None:
            try:
                self._feed(self.discovery.retire())
            except StateError as exc:
                self.state_error = exc

    def _drain_reports(self) -> None:
        try:
            self._take_reports(0.0)
        except RuntimeError:
            pass

    def _left_bytes(self) -> int:
        """Bytes of complete lines in matched files that this run did not get shipped."""
        left = sum(f.deliverable for f in self._snapshot.files)
        for w in self.discovery.blocking():
            try:
                left += Path(w.path).stat().st_size
            except OSError:
                pass
        return left

    def close(self) -> None:
        self.discovery.close()
        self.pool.close()
        self.dead_letter.close()
        self.offsets.close()
