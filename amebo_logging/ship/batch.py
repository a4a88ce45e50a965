"""Lines to documents, and documents into batches bounded by count, bytes and age.

Each complete line becomes one bulk ``create`` operation whose ``_id`` is the file's id and
the line's offset.  A line holding a JSON object is shipped as that object with
``log.file.path``, ``log.offset``, ``host.name`` (and ``@timestamp`` = the read time if it had
none) added, without being re-serialized.  Any other line — not JSON, not an object, not
UTF-8, NUL bytes, over the length limit — is shipped as a document whose ``message`` is the
text, safely decoded, with ``error.message`` saying why.  Empty lines carry nothing and are
counted, not shipped.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import msgspec
import orjson

from ..render import timestamp_now
from .tail import Chunk, LongLine, TrackedFile

__all__ = ["Batch", "Batcher", "ReadStats"]

_ACTION_END = b'"}}\n'


class _Probe(msgspec.Struct):
    """What the fast path needs to know of a line; decoding it checks the whole line is one
    JSON object (every value is parsed, only these keys are kept)."""

    timestamp: object = msgspec.field(name="@timestamp", default=msgspec.UNSET)
    file_path: object = msgspec.field(name="log.file.path", default=msgspec.UNSET)
    offset: object = msgspec.field(name="log.offset", default=msgspec.UNSET)
    host_name: object = msgspec.field(name="host.name", default=msgspec.UNSET)


_UNSET = msgspec.UNSET


@dataclass
class ReadStats:
    """Counts kept by the reading side."""

    lines: int = 0
    bytes: int = 0
    empty: int = 0
    parse_failures: int = 0
    truncated: int = 0


@dataclass(eq=False)
class Batch:
    """Documents ready to send, with what is needed to acknowledge and dead-letter each."""

    ops: list[bytes] = field(default_factory=list)  # per document: its action line and source line
    files: list[TrackedFile] = field(default_factory=list)
    offsets: list[int] = field(default_factory=list)
    ends: list[int] = field(default_factory=list)  # offset just past each line's newline
    file_ends: dict[TrackedFile, int] = field(default_factory=dict)  # read end, empty lines included
    nbytes: int = 0
    created: float = field(default_factory=time.monotonic)

    def __len__(self) -> int:
        return len(self.ops)

    def op(self, i: int) -> bytes:
        """Document *i*'s bulk operation: its action line and its source line."""
        return self.ops[i]

    def body(self, indices: list[int] | None = None) -> bytes:
        """The bulk request body for all documents, or for those at *indices*."""
        if indices is None:
            return b"".join(self.ops)
        ops = self.ops
        return b"".join([ops[i] for i in indices])


def _safe_text(raw: bytes) -> str:
    return raw.decode("utf-8", "backslashreplace").replace("\x00", "\\x00")


def _why_not_an_object(raw: bytes, exc: Exception | None) -> str:
    if b"\x00" in raw:
        return "the line contains NUL bytes"
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError as err:
        return f"the line is not valid UTF-8 (byte {err.start})"
    if exc is not None:
        return f"the line is not JSON: {exc}"
    return "the line is JSON but not an object"


class Batcher:
    """Turns chunks of lines into batches; hands each full batch to *emit*."""

    def __init__(
        self,
        emit: Callable[[Batch], None],
        *,
        host_name: str,
        batch_size: int,
        batch_bytes: int,
        max_line_bytes: int,
        stats: ReadStats,
    ) -> None:
        self._emit = emit
        self.host_name = host_name
        self.host_json = orjson.dumps(host_name)
        self.batch_size = batch_size
        self.batch_bytes = batch_bytes
        self.max_line_bytes = max_line_bytes
        self.stats = stats
        self.batch = Batch()
        self._path_cache: dict[str, bytes] = {}
        self._probe = msgspec.json.Decoder(_Probe).decode

    def _meta_prefix(self, tf: TrackedFile) -> bytes:
        """``{"log.file.path":...,"host.name":...,"log.offset":`` for *tf*'s current path."""
        prefix = self._path_cache.get(tf.path)
        if prefix is None:
            prefix = b'{"log.file.path":' + orjson.dumps(tf.path) + b',"host.name":' + self.host_json + b',"log.offset":'
            if len(self._path_cache) > 4096:
                self._path_cache.clear()
            self._path_cache[tf.path] = prefix
        return prefix

    def flush(self) -> None:
        """Emit the batch being filled, if it has anything."""
        if self.batch.ops or self.batch.file_ends:
            batch, self.batch = self.batch, Batch()
            self._emit(batch)

    def add(self, item: Chunk | LongLine) -> None:
        if isinstance(item, LongLine):
            self._add_long(item)
        else:
            self._add_chunk(item)

    def _add_long(self, item: LongLine) -> None:
        tf = item.file
        self.stats.lines += 1
        self.stats.truncated += 1
        self.stats.bytes += item.length + 1
        head = item.head[:-1] if item.head.endswith(b"\r") else item.head
        doc = self._truncated(head, item.length)
        self._append(tf, item.offset, item.offset + item.length + 1, self._op(tf, item.offset, doc))

    def _append(self, tf: TrackedFile, offset: int, end: int, op: bytes) -> None:
        b = self.batch
        b.ops.append(op)
        b.files.append(tf)
        b.offsets.append(offset)
        b.ends.append(end)
        b.file_ends[tf] = end
        b.nbytes += len(op)
        if len(b.ops) >= self.batch_size or b.nbytes >= self.batch_bytes:
            self.flush()

    def _add_chunk(self, chunk: Chunk) -> None:
        tf = chunk.file
        data = chunk.data
        offset = chunk.offset
        self.stats.bytes += len(data)
        all_ascii = data.isascii()
        action = tf.action_prefix
        middle = _ACTION_END + self._meta_prefix(tf)
        probe = self._probe
        decode_error = msgspec.DecodeError  # ValidationError (not an object) is a subclass
        max_len = self.max_line_bytes
        limit_n, limit_b = self.batch_size, self.batch_bytes
        read_time: bytes | None = None
        b = self.batch
        ops, files, offsets, ends = b.ops, b.files, b.offsets, b.ends
        size, nbytes = len(ops), b.nbytes
        lines = empty = 0
        for raw in data.split(b"\n")[:-1]:
            start = offset
            offset += len(raw) + 1
            lines += 1
            line = raw[:-1] if raw[-1:] == b"\r" else raw
            if not line:
                empty += 1
                b.file_ends[tf] = offset
                continue
            op = None
            # The fast path: a JSON object without a blank after "{", in UTF-8, without our
            # metadata keys: the metadata is spliced in, nothing is re-serialized.
            if len(line) <= max_len and line[0] == 0x7B and line[1:2] == b'"':
                try:
                    found = probe(line)
                    if not all_ascii:
                        line.decode("utf-8")
                except (decode_error, UnicodeDecodeError):
                    found = None
                if found is not None and found.file_path is _UNSET and found.offset is _UNSET \
                        and found.host_name is _UNSET:
                    if found.timestamp is not _UNSET:
                        op = b"%s%d%s%d,%s\n" % (action, start, middle, start, line[1:])
                    else:
                        if read_time is None:
                            read_time = b'"@timestamp":"' + timestamp_now().encode() + b'",'
                        op = b"%s%d%s%d,%s%s\n" % (action, start, middle, start, read_time, line[1:])
            if op is None:
                op = self._slow_op(tf, start, line, max_len)
            ops.append(op)
            files.append(tf)
            offsets.append(start)
            ends.append(offset)
            nbytes += len(op)
            size += 1
            if size >= limit_n or nbytes >= limit_b:
                b.nbytes = nbytes
                b.file_ends[tf] = offset
                self.flush()
                b = self.batch
                ops, files, offsets, ends = b.ops, b.files, b.offsets, b.ends
                size, nbytes = 0, 0
        b.nbytes = nbytes
        b.file_ends[tf] = offset
        self.stats.lines += lines
        self.stats.empty += empty

    def _truncated(self, head: bytes, length: int) -> dict[str, Any]:
        """The document of a line of *length* bytes cut to its first bytes, *head*."""
        return {
            "@timestamp": timestamp_now(),
            "message": _safe_text(head[: self.max_line_bytes]),
            "error.message": f"the line is {length} bytes, over --max-line-bytes {self.max_line_bytes}: "
                             "only its first bytes were kept",
            "tags": ["truncated"],
        }

    def _op(self, tf: TrackedFile, offset: int, doc: dict[str, Any]) -> bytes:
        """The bulk operation for *doc*, with the shipper's metadata (which replaces the line's)."""
        doc.update({"log.file.path": tf.path, "log.offset": offset, "host.name": self.host_name})
        return tf.action_prefix + b"%d" % offset + _ACTION_END + orjson.dumps(doc) + b"\n"

    def _slow_op(self, tf: TrackedFile, offset: int, line: bytes, max_len: int) -> bytes:
        """The operation for a line that is not a plain JSON object line."""
        if len(line) > max_len:
            self.stats.truncated += 1
            doc: dict[str, Any] = self._truncated(line, len(line))
        else:
            try:
                parsed: Any = orjson.loads(line)
                exc = None
            except orjson.JSONDecodeError as err:
                parsed, exc = None, err
            if type(parsed) is dict:  # an object with our metadata keys, or leading blanks
                doc = parsed
                doc.setdefault("@timestamp", timestamp_now())
            else:
                self.stats.parse_failures += 1
                doc = {"@timestamp": timestamp_now(), "message": _safe_text(line),
                       "error.message": _why_not_an_object(line, exc)}
        return self._op(tf, offset, doc)
