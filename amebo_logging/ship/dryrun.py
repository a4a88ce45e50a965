"""``ship --dry-run``: the transport that prints instead of sending.

:class:`ConsoleTransport` stands in for the cluster: each bulk request body goes to standard
output exactly as it would be sent (NDJSON: an action line, then the document), and every
document counts as delivered.  With the in-memory state copy the shipper uses in a dry run,
nothing is written to the state directory and no cluster is needed, the way Filebeat's
console output and Fluent Bit's stdout output let you see what would be shipped.

Several senders may share it: each body is written whole, under a lock, in one write.
"""

from __future__ import annotations

import sys
import threading
import zlib
from typing import IO

from .transport import Answer

__all__ = ["ConsoleTransport"]


class ConsoleTransport:
    """Writes bulk bodies to *out* (standard output by default); answers like Elasticsearch."""

    def __init__(self, out: IO[bytes] | None = None) -> None:
        self.out = out if out is not None else sys.stdout.buffer
        self._lock = threading.Lock()

    def send(self, body: bytes, target: str, *, gzipped: bool = False) -> Answer:
        if gzipped:  # (a dry run never packs its batches; printed readable all the same)
            body = zlib.decompress(body, 31)
        with self._lock:
            self.out.write(body)
            self.out.flush()
        return Answer({"errors": False, "items_count": body.count(b"\n") // 2}, 200, node="stdout")

    def close(self) -> None:
        pass
