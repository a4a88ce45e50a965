"""``ship --dry-run``: the transport seam that prints instead of sending.

:class:`ConsoleClient` stands in for the Elasticsearch client: each bulk request body goes to
standard output exactly as it would be sent (NDJSON: an action line, then the document),
and every document counts as delivered.  With the in-memory state copy the shipper uses in
a dry run, nothing is written to the state directory and no cluster is needed, the way
Filebeat's console output and Fluent Bit's stdout output let you see what would be shipped.
"""

from __future__ import annotations

import sys
from typing import IO, Any

__all__ = ["ConsoleClient"]


class _Answer:
    def __init__(self, body: dict[str, Any]) -> None:
        self.body = body


class ConsoleClient:
    """Writes bulk bodies to *out* (standard output by default); answers like Elasticsearch."""

    def __init__(self, out: IO[bytes] | None = None) -> None:
        self.out = out if out is not None else sys.stdout.buffer

    def bulk(self, *, operations: bytes, index: str, filter_path: str | None = None) -> _Answer:
        self.out.write(operations)
        self.out.flush()
        return _Answer({"errors": False, "items_count": operations.count(b"\n") // 2})

    def options(self, **_kwargs: Any) -> ConsoleClient:
        return self
