"""The dead-letter file: documents Elasticsearch refused for good, with its reason.

One NDJSON object per refused document, appended (``O_APPEND``) and fsynced before the
offsets past it are committed, so a refused line is never lost: at worst, after a crash, it
is written twice.  Each entry holds Elasticsearch's status and error, the file and offset, the
document's ``_id``, the original line and the document as it was sent, all taken from the
batch itself (the files may be gone, and belong to the reading thread).
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any

import orjson

from ..render import timestamp_now
from .batch import Batch

__all__ = ["DeadLetter"]


def _text(raw: bytes) -> str:
    return raw.decode("utf-8", "backslashreplace")


class DeadLetter:
    """Appends refused documents to *path* (created 0600)."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
        self._lock = threading.Lock()
        self.count = 0
        self.where = str(self.path)

    def record(self, batch: Batch, refused: list[tuple[int, int, Any]]) -> None:
        """Append an entry per refused (index, status, error) of *batch*, fsynced."""
        self.write([self.entry(batch, i, status, error) for i, status, error in refused])

    def entry(self, batch: Batch, i: int, status: int, error: Any) -> bytes:
        action, _, source = batch.op(i).partition(b"\n")
        try:
            line: str | None = _text(batch.original_line(i))
        except ValueError:  # a document the shipper did not build from a line (the in-process handler)
            line = None
        record = {
            "@timestamp": timestamp_now(),
            "status": status,
            "error": error,
            "_id": orjson.loads(action)["create"]["_id"],
            "log.file.path": batch.source(i).path if len(batch) else None,
            "log.offset": batch.offsets[i] if batch.offsets else None,
            "line": line,
            "document": _text(source.rstrip(b"\n")),
        }
        return orjson.dumps(record) + b"\n"

    def write(self, entries: list[bytes]) -> None:
        """Append *entries* and fsync; raises OSError (the caller retries, nothing is lost)."""
        if not entries:
            return
        data = memoryview(b"".join(entries))
        with self._lock:
            while data:
                data = data[os.write(self._fd, data) :]
            os.fsync(self._fd)
            self.count += len(entries)

    def close(self) -> None:
        with self._lock:
            os.close(self._fd)
