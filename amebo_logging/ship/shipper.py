"""The shipping loop: read -> batch -> (queue) -> bulk -> commit, in two threads.

The reading thread tails the files and fills batches; full batches wait in a queue of
``max_in_flight`` places, so while Elasticsearch is slow or down reading pauses and memory
stays bounded.  The sending thread settles each batch (bulk.py) and then commits, per file,
the offset past the last line that is settled along with every line before it.
"""

from __future__ import annotations

import queue
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from elasticsearch import Elasticsearch

from ..logger import AmeboLogger
from .batch import Batch, Batcher, ReadStats
from .bulk import Backoff, BulkSender, DeliveryStats
from .deadletter import DeadLetter
from .errors import EXIT_CONFIG, OperatorError
from .state import StateStore
from .tail import Tailer, TrackedFile

__all__ = ["ShipOptions", "Shipper", "Summary", "commit_offsets"]

POLL_INTERVAL = 0.1


@dataclass
class ShipOptions:
    patterns: list[str]
    target: str = "logs-amebo-default"
    state_dir: Path = Path("~/.local/state/amebo-logship").expanduser()
    dead_letter: Path | None = None
    excludes: list[str] = field(default_factory=list)
    batch_size: int = 5000
    batch_bytes: int = 10 * 1024 * 1024
    flush_interval: float = 1.0
    max_line_bytes: int = 1024 * 1024
    scan_interval: float = 10.0
    shutdown_timeout: float = 30.0
    close_inactive: float = 300.0
    max_in_flight: int = 2
    backoff_initial: float = 0.5
    backoff_max: float = 30.0
    once: bool = False
    wait_for_files: bool = False
    host_name: str = field(default_factory=socket.gethostname)


@dataclass
class Summary:
    """What a run did."""

    files: int
    read: ReadStats
    delivery: DeliveryStats
    partial_lines: dict[str, int]
    seconds: float
    unsettled: int


def commit_offsets(batch: Batch, settled: bytearray) -> dict[TrackedFile, int]:
    """Per file, the offset past the last line settled with every line before it settled.

    When every document of a file in *batch* is settled, that is the batch's read end for
    the file (which covers trailing empty lines); else the end of the settled prefix.
    """
    if settled.count(0) == 0:  # the usual case: everything settled
        return dict(batch.file_ends)
    out: dict[TrackedFile, int] = {}
    blocked: set[TrackedFile] = set()
    for i, tf in enumerate(batch.files):
        if tf in blocked:
            continue
        if settled[i]:
            out[tf] = batch.ends[i]
        else:
            blocked.add(tf)
    for tf, end in batch.file_ends.items():
        if tf not in blocked:
            out[tf] = max(out.get(tf, 0), end)
    return out


class Shipper:
    """Runs one shipping session; ``run()`` returns its :class:`Summary`."""

    def __init__(self, options: ShipOptions, client: Elasticsearch, log: AmeboLogger,
                 progress: Callable[[Shipper], None] | None = None) -> None:
        self.options = options
        self.log = log
        self.progress = progress
        self.state = StateStore(options.state_dir)
        self.stop_requested = threading.Event()
        self.hard_stop = threading.Event()
        self.read_stats = ReadStats()
        self.delivery_stats = DeliveryStats()
        dead_path = options.dead_letter or (options.state_dir / "dead-letter.ndjson")
        try:
            self.dead_letter = DeadLetter(dead_path)
        except OSError as exc:
            self.state.close()
            raise OperatorError(EXIT_CONFIG, f"cannot open the dead-letter file {dead_path}: {exc.strerror}") from None
        self.tailer = Tailer(options.patterns, self.state, excludes=options.excludes,
                             max_line_bytes=options.max_line_bytes, close_inactive=options.close_inactive)
        self.queue: queue.Queue[Batch | None] = queue.Queue(maxsize=max(1, options.max_in_flight))
        self.batcher = Batcher(self._enqueue, host_name=options.host_name, batch_size=options.batch_size,
                               batch_bytes=options.batch_bytes, max_line_bytes=options.max_line_bytes,
                               stats=self.read_stats)
        self.sender = BulkSender(client, options.target, self.dead_letter, stats=self.delivery_stats,
                                 backoff=Backoff(options.backoff_initial, options.backoff_max),
                                 hard_stop=self.hard_stop, on_problem=self._problem)
        self.unsettled = 0
        self.started_at = time.time()
        self._sender_thread = threading.Thread(target=self._send_loop, name="amebo-logship-sender", daemon=True)
        self._shutdown_timer: threading.Timer | None = None

    # --- control ---------------------------------------------------------------------------
    def request_stop(self) -> None:
        """Stop reading; deliver what was read within the shutdown timeout, then return."""
        if not self.stop_requested.is_set():
            self.stop_requested.set()
            timer = threading.Timer(self.options.shutdown_timeout, self.hard_stop.set)
            timer.daemon = True
            timer.start()
            self._shutdown_timer = timer

    def _problem(self, event: str, fields: dict[str, Any]) -> None:
        level = self.log.warning if event in ("documents_retried",) else self.log.error
        level(event, **fields)

    # --- the reading thread ------------------------------------------------------------------
    def _enqueue(self, batch: Batch | None) -> None:
        """Queue *batch* (None: the end), waiting while the queue is full.

        A batch is given up at the hard stop: it is not committed, so it is read again next
        time.  If the sending thread died, the end needs no place, and a batch is an error."""
        while True:
            try:
                self.queue.put(batch, timeout=0.1)
                return
            except queue.Full:
                if batch is not None and self.hard_stop.is_set():
                    return
                thread = self._sender_thread
                if thread.ident is not None and not thread.is_alive():
                    if batch is None or self.hard_stop.is_set():
                        return
                    raise RuntimeError("the sending thread stopped unexpectedly (see the sender_crashed record)")

    def _drain_events(self) -> None:
        events, self.tailer.events = self.tailer.events, []
        for event, fields in events:
            self.log.info(event, **fields)

    def run(self) -> Summary:
        started = time.monotonic()
        opts = self.options
        self.tailer.scan()
        self._drain_events()
        if not self.tailer.files and not self.tailer.waiting and not opts.wait_for_files:
            self.close()
            raise OperatorError(
                EXIT_CONFIG,
                f"no files match {' '.join(opts.patterns)}: check the patterns (quote them so the shell does "
                "not expand them), or pass --wait-for-files to wait for files to appear",
            )
        self._sender_thread.start()
        try:
            return self._run(started)
        except BaseException:
            self.hard_stop.set()
            self.close()
            raise

    def _run(self, started: float) -> Summary:
        opts = self.options
        last_scan = time.monotonic()
        try:
            while not self.stop_requested.is_set():
                items = self.tailer.poll()
                for item in items:
                    self.batcher.add(item)
                now = time.monotonic()
                if len(self.batcher.batch) and now - self.batcher.batch.created >= opts.flush_interval:
                    self.batcher.flush()
                if self.progress is not None:
                    self.progress(self)
                if not items:
                    if opts.once and self.tailer.all_at_eof():
                        break
                    if now - last_scan >= opts.scan_interval:
                        self.tailer.scan()
                        self.tailer.retire()
                        last_scan = now
                    self._drain_events()
                    self.stop_requested.wait(POLL_INTERVAL)
        finally:
            self.batcher.flush()
            self._enqueue(None)
            while self._sender_thread.is_alive():
                self._sender_thread.join(timeout=0.2)
                if self.progress is not None:
                    self.progress(self)
            self.tailer.retire()
            self._drain_events()
        partial = {tf.path: tf.partial_bytes for tf in self.tailer.files.values() if tf.partial_bytes}
        summary = Summary(files=len(self.tailer.files), read=self.read_stats, delivery=self.delivery_stats,
                          partial_lines=partial, seconds=time.monotonic() - started, unsettled=self.unsettled)
        self.close()
        return summary

    # --- the sending thread ------------------------------------------------------------------
    def _send_loop(self) -> None:
        try:
            self._send_batches()
        except BaseException as exc:  # a bug: say so; the reading thread notices and stops the run
            self.log.critical("sender_crashed", exc_info=exc)

    def _send_batches(self) -> None:
        while True:
            batch = self.queue.get()
            if batch is None:
                return
            settled = self.sender.deliver(batch) if len(batch) else bytearray()
            self._commit(batch, settled)
            missing = settled.count(0)
            if missing:  # the hard stop cut the retries short: commit nothing after this
                self.unsettled += missing + sum(len(b) for b in self._drain_queue())
                self.log.warning("shutdown_timeout_reached", unsettled_documents=self.unsettled,
                                 reason="these lines were not acknowledged; they are read again next time")
                return

    def _drain_queue(self) -> list[Batch]:
        out = []
        while True:
            try:
                b = self.queue.get_nowait()
            except queue.Empty:
                return out
            if b is not None:
                out.append(b)

    def _commit(self, batch: Batch, settled: bytearray) -> None:
        offsets = commit_offsets(batch, settled)
        rows = [(tf.uid, off, tf.path, tf.size) for tf, off in offsets.items() if off > tf.committed]
        if not rows:
            return
        try:
            self.state.commit(rows)
        except Exception as exc:  # sqlite3 errors, a full disk: the lines are shipped again later
            self.log.error("offset_commit_failed", **{"error.message": str(exc)},
                           reason="offsets stay where they were; replayed lines are absorbed as duplicates")
            return
        for tf, off in offsets.items():
            if off > tf.committed:
                tf.committed = off

    def close(self) -> None:
        if self._shutdown_timer is not None:
            self._shutdown_timer.cancel()
        self.tailer.close()
        self.dead_letter.close()
        self.state.close()
