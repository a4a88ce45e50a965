"""Ship records straight from the application to Elasticsearch, with the shipper's bulk sender.

Prefer files + ``amebo-logship ship`` when losing records matters: a file survives a crash.
This handler keeps records in memory until they are sent, so what is queued when the process
dies (``kill -9``, OOM) is lost, and during a long outage the oldest records are dropped.

* The logging call never blocks: it renders the record and appends it to a bounded queue;
  a background thread sends batches (by count, bytes and time) with retries and backoff.
* When the queue is full the oldest records are dropped and counted; the count is reported
  on stderr (``elasticsearch_handler_dropped``) and in :attr:`ElasticsearchHandler.stats`.
* ``close()`` (called by ``logging.shutdown()`` at exit) delivers what is queued within
  *close_timeout* seconds.
* After ``fork()`` the child starts with an empty queue, its own client and thread
  (gunicorn-style workers): the parent's queued records are shipped by the parent only.

Latency first: the sending thread takes whatever is queued as soon as it is idle, so at
light load a record leaves within milliseconds; while a request is in flight records queue
up and leave together, up to *batch_size* and *batch_bytes* (made by the shipper's own
batcher).  Each record's ``_id`` is this process's random prefix and the record's position in
its stream, so a retried request never adds a duplicate: a replayed record gets 409, which
counts as delivered.
"""

from __future__ import annotations

import atexit
import codecs
import collections
import logging
import os
import sys
import threading
import time
import weakref
from typing import Any

from ..stdlib import EcsJsonFormatter
from .batch import Batch, Batcher, ReadStats
from .bulk import Backoff, BulkSender, DeliveryStats
from .connection import ConnectionSettings
from .items import Chunk, Source
from .transport import BulkTransport, ElasticsearchTransport

__all__ = ["ElasticsearchHandler"]

_DIAG = "amebo_logging.elasticsearch"


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is at the time of the record."""

    @property
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, value: Any) -> None:
        pass


def _diagnostics() -> logging.Logger:
    """The handler's own log: JSON on stderr, never shipped by the handler itself."""
    log = logging.getLogger(_DIAG)
    if not log.handlers:
        handler = _StderrHandler()
        handler.setFormatter(EcsJsonFormatter())
        log.addHandler(handler)
        log.propagate = False
        log.setLevel(logging.INFO)
    return log


class _Refused:
    """Permanent failures of the handler: counted and reported, there is no file to keep them."""

    where = "nowhere (in-process handler)"

    def __init__(self, log: logging.Logger) -> None:
        self.log = log
        self.count = 0

    def record(self, batch: Batch, refused: list[tuple[int, int, Any]]) -> None:
        self.count += len(refused)
        first = refused[0][2]
        self.log.warning(
            "elasticsearch_handler_refused",
            extra={
                "documents": len(refused),
                "first_reason": first.get("reason") if isinstance(first, dict) else first,
            },
        )


class ElasticsearchHandler(logging.Handler):
    """A ``logging.Handler`` (and a line sink) that bulk-sends ECS records to Elasticsearch.

    Give it to ``configure_logging(elasticsearch=handler)`` to ship structlog and stdlib
    records alike, or add it to a logger yourself for stdlib records only.  Connection
    arguments are those of ``amebo-logship``; *transport* takes a ready
    :class:`~amebo_logging.ship.transport.BulkTransport` instead (a test double, say).
    """

    def __init__(
        self,
        es_url: str | list[str] = "http://localhost:9200",
        *,
        data_stream: str = "logs-amebo-default",
        index: str | None = None,
        api_key: str | None = None,
        username: str | None = None,
        password: str | None = None,
        ca_certs: str | None = None,
        insecure: bool = False,
        queue_size: int = 10_000,
        batch_size: int = 500,
        batch_bytes: int = 5 * 1024 * 1024,
        flush_interval: float = 1.0,
        close_timeout: float = 5.0,
        backoff_initial: float = 0.5,
        backoff_max: float = 30.0,
        transport: BulkTransport | None = None,
        level: int = logging.NOTSET,
    ) -> None:
        super().__init__(level)
        # The HTTP client encodes host names with the idna codec: registered now, before the
        # sending thread exists, a fork() can never catch its import half-done.
        codecs.lookup("idna")
        self.setFormatter(EcsJsonFormatter())
        self.settings = ConnectionSettings(
            urls=[es_url] if isinstance(es_url, str) else list(es_url),
            api_key=api_key,
            username=username,
            password=password,
            ca_certs=ca_certs,
            insecure=insecure,
        )
        self._given_transport = transport
        self.target = index or data_stream
        self.queue_size = queue_size
        self.batch_size = batch_size
        self.batch_bytes = batch_bytes
        self.flush_interval = flush_interval
        self.close_timeout = close_timeout
        self.backoff = (backoff_initial, backoff_max)
        self._diag = _diagnostics()
        self._init_process_state()
        ref = weakref.ref(self)

        def in_child() -> None:
            handler = ref()
            if handler is not None:
                handler._init_process_state()

        def at_exit() -> None:
            handler = ref()
            if handler is not None:
                handler.close()

        os.register_at_fork(after_in_child=in_child)
        atexit.register(at_exit)

    def _init_process_state(self) -> None:
        """Fresh queue, lock, counters and (lazily) thread and client: at start and in a fork child."""
        self._queue: collections.deque[bytes] = collections.deque()
        self._cond = threading.Condition(threading.Lock())
        self._thread: threading.Thread | None = None
        self._transport: BulkTransport | None = (
            self._given_transport if os.getpid() == getattr(self, "_pid", os.getpid()) else None
        )
        self._pid = os.getpid()
        self._closing = False
        self._closed = False
        self._hard_stop = threading.Event()
        self._dropped = 0
        self._dropped_reported = 0
        self._in_flight = 0
        self._unsent = 0
        # Each record's _id: this process's random prefix and the record's position in its
        # stream of records, so a retried request adds no duplicate.
        self._source = Source.make(os.urandom(8).hex(), "")
        self._position = 0
        self.delivery = DeliveryStats()
        self._refused = _Refused(self._diag)

    # --- the producer side: never blocks --------------------------------------------------
    def emit(self, record: logging.LogRecord) -> None:
        if record.name == _DIAG:
            return
        self.submit(self.formatter.format_bytes(record))  # type: ignore[union-attr]

    def handle(self, record: logging.LogRecord) -> bool:
        if self.filters and not self.filter(record):
            return False
        self.emit(record)  # no handler lock: submit() is thread-safe on its own
        return True

    def submit(self, line: bytes) -> None:
        """Queue a rendered record (a JSON object and a newline); drops the oldest when full."""
        if self._closed or threading.current_thread() is self._thread:
            return  # records made by the sending thread itself (its client's logs) would loop
        with self._cond:
            if len(self._queue) >= self.queue_size:
                self._queue.popleft()
                self._dropped += 1
            self._queue.append(line)
            if self._thread is None:
                self._start()
            if len(self._queue) >= self.batch_size:
                self._cond.notify()

    def _start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="amebo-logging-elasticsearch", daemon=True)
        self._thread.start()

    @property
    def stats(self) -> dict[str, int]:
        """queued, dropped, delivered, duplicates, refused, retries (all causes)."""
        d = self.delivery
        return {
            "queued": len(self._queue) + self._in_flight,
            "dropped": self._dropped,
            "delivered": d.delivered,
            "duplicates": d.duplicates,
            "refused": self._refused.count,
            "retries": sum(d.retries.values()),
        }

    # --- the sending thread ------------------------------------------------------------------
    def _take(self) -> list[bytes]:
        """Latency first: as soon as anything is queued, take what is there (up to the
        batch limits).  While a request is in flight records keep queueing, so the next
        take is a fuller batch: light load gets milliseconds, heavy load full batches."""
        with self._cond:
            while not self._queue and not self._closing:
                self._cond.wait(self.flush_interval)
            lines: list[bytes] = []
            size = 0
            while self._queue and len(lines) < self.batch_size and size < self.batch_bytes:
                line = self._queue.popleft()
                lines.append(line)
                size += len(line)
            self._in_flight = len(lines)
            return lines

    def _batches(self, lines: list[bytes]) -> list[Batch]:
        """*lines* as bulk batches, made by the shipper's batcher (ids: this process's
        prefix and each record's position in its stream of records)."""
        out: list[Batch] = []
        batcher = Batcher(
            out.append,
            host_name="",
            batch_size=self.batch_size,
            batch_bytes=self.batch_bytes,
            max_line_bytes=1 << 30,
            stats=ReadStats(),
            with_metadata=False,
        )
        data = b"".join(lines)
        batcher.add(Chunk(self._source, self._position, data))
        batcher.flush()
        self._position += len(data)
        return out

    def _run(self) -> None:
        sender: BulkSender | None = None
        while True:
            lines = self._take()
            if lines:
                if sender is None:
                    if self._transport is None:
                        self._transport = ElasticsearchTransport(self.settings)
                    sender = BulkSender(
                        self._transport,
                        self.target,
                        self._refused,
                        report=self.delivery.add,  # this thread is the counts' only writer
                        backoff=Backoff(*self.backoff),
                        hard_stop=self._hard_stop,
                        on_problem=self._problem,
                    )
                for batch in self._batches(lines):
                    outcome = sender.deliver(batch)
                    unsent = outcome.settled.count(0)  # the hard stop cut the retries short, or a refusal
                    self._unsent += unsent
                    if outcome.fatal is not None and unsent:
                        self._refused.count += unsent
                        self._diag.error(
                            "elasticsearch_handler_refused",
                            extra={"documents": unsent, "reason": outcome.fatal.message},
                        )
                self._in_flight = 0
            self._report_drops()
            with self._cond:
                if self._closing and not self._queue:
                    self._cond.notify_all()
                    return
                if self._hard_stop.is_set():
                    return

    def _problem(self, level: str, event: str, fields: dict[str, Any]) -> None:
        getattr(self._diag, level)(event, extra=fields)

    def _report_drops(self) -> None:
        dropped = self._dropped
        if dropped > self._dropped_reported:
            self._diag.warning(
                "elasticsearch_handler_dropped",
                extra={
                    "dropped": dropped - self._dropped_reported,
                    "dropped_total": dropped,
                    "reason": "the queue was full (Elasticsearch slow or down): the oldest records were dropped",
                },
            )
            self._dropped_reported = dropped

    # --- flushing and closing --------------------------------------------------------------------
    def flush(self, timeout: float | None = None) -> bool:  # type: ignore[override]  # logging ignores the result
        """Wait until everything queued was sent (or *timeout*); True when it was."""
        deadline = time.monotonic() + (self.close_timeout if timeout is None else timeout)
        with self._cond:
            self._cond.notify()
        while self._queue or self._in_flight:
            if time.monotonic() > deadline or self._thread is None or not self._thread.is_alive():
                return False
            time.sleep(0.01)
        return True

    def close(self) -> None:
        """Deliver what is queued within *close_timeout*, then stop.  Idempotent."""
        if self._closed:
            return
        self._closed = True
        thread = self._thread
        if thread is not None and thread.is_alive():
            with self._cond:
                self._closing = True
                self._cond.notify_all()
            thread.join(self.close_timeout)
            if thread.is_alive():  # Elasticsearch is down: stop retrying, say what was lost
                self._hard_stop.set()
                thread.join(1.0)
                lost = len(self._queue) + self._in_flight + self._unsent
                if lost:
                    self._diag.error(
                        "elasticsearch_handler_closed_with_loss",
                        extra={
                            "documents": lost,
                            "reason": f"not delivered within close_timeout {self.close_timeout}s",
                        },
                    )
        self._report_drops()
        super().close()
