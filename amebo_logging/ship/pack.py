"""Request bodies gzipped off the loop's thread, and when that is worth it.

A batch is held until Elasticsearch acknowledges it (a retry sends it again), so a distant
cluster costs memory: at 0.5 s a round trip, 300,000 documents a second means 150,000 of
them, some 80 MB of bodies, in flight (Little's law).  Gzipped at level 1 (Filebeat's and
Logstash's default) Amebo's records take a fifteenth of that, on the wire as in memory.

:class:`Packer` is two threads: the loop hands it each frozen batch, numbered, with whether
to gzip it, and takes back, on the senders' report queue, a :class:`Packed` value carrying
the number (ISA-L's gzip, or zlib's, leaves the interpreter lock while it works, so packing
goes on beside the reading; two threads, because each waits for the lock on the way in and
out).  The
loop puts them back in order.  Nothing is shared but the two queues.

:func:`worth_gzipping` is the ``--compress auto`` rule, a memory bound by Little's law: the
bodies in flight are the rate they are sent at times the round trip.  One shipper sends at
most about 160 MB/s of bodies (what one core reads and batches), so with round trips under
:data:`NEAR` (0.2 s) at most about 32 MB of plain bodies are in flight, and they go plain:
there gzip would cost the shipper and the cluster CPU (a tenth or more of the shipper's,
measured, and an inflate per byte on the cluster) to save little.  Longer round trips (a
distant cluster, a busy one, or a slow link, whose transfer time is part of the round trip)
mean more in flight: those bodies are gzipped, 15x smaller in memory and on the wire.  Until
the first answers say how far the cluster is, bodies are gzipped.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass

from ..logger import AmeboLogger
from .batch import Batch
from .errors import Crashed

__all__ = ["NEAR", "Packed", "Packer", "worth_gzipping"]

#: A cluster whose bulk round trip (as learned, seconds) is under this is sent plain bodies (auto).
NEAR = 0.2


def worth_gzipping(mode: str, rtt_baseline: float | None) -> bool:
    """Whether to gzip the next batch: *mode* is ``--compress`` (``auto``, ``gzip``, ``off``);
    *rtt_baseline* the round-trip time learned so far (None: no answer yet)."""
    if mode == "gzip":
        return True
    if mode == "off":
        return False
    return rtt_baseline is None or rtt_baseline >= NEAR


@dataclass(frozen=True, slots=True)
class Packed:
    """Batch number *n*, ready to send: gzipped, or as it was."""

    n: int
    batch: Batch


class Packer:
    """*threads* threads turning numbered batches into :class:`Packed` values, handed to *out*
    (in any order)."""

    def __init__(
        self, out: Callable[[Packed | Crashed], None], log: AmeboLogger, level: int = 1, threads: int = 2
    ) -> None:
        self.out = out
        self.log = log
        self.level = level
        self._in: queue.SimpleQueue[tuple[int, Batch, bool] | None] = queue.SimpleQueue()
        self._threads = [
            threading.Thread(target=self._run, name=f"amebo-logship-packer-{k}", daemon=True) for k in range(threads)
        ]

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def submit(self, n: int, batch: Batch, gzip: bool) -> None:
        self._in.put((n, batch, gzip))

    def _run(self) -> None:
        try:
            while True:
                item = self._in.get()
                if item is None:
                    return
                n, batch, gzip = item
                self.out(Packed(n, batch.packed(self.level) if gzip else batch))
                del item, batch  # the unpacked body is let go at once
        except BaseException as exc:  # a bug: say so; the main loop stops the run
            self.log.critical("packer_crashed", exc_info=exc)
            self.out(Crashed(exc, "packing", "packer_crashed"))

    def stop(self) -> None:
        for _ in self._threads:
            self._in.put(None)

    def join(self, timeout: float) -> None:
        for thread in self._threads:
            thread.join(timeout / len(self._threads))
