"""Lines to documents, and documents into batches bounded by count and bytes.

Each complete line becomes one bulk ``create`` operation whose ``_id`` is the file
generation's id and the line's offset.  A line holding a JSON object is shipped as that
object with ``log.file.path``, ``log.offset``, ``host.name`` (and ``@timestamp`` = the read
time if it had none) added, without being re-serialized.  Any other line (not JSON, not an
object, not UTF-8, NUL bytes, over the length limit, nested too deep to re-encode) is shipped
as a document whose ``message`` is the text, safely decoded, with ``error.message`` saying
why.  No line can stop a file: whatever goes wrong turning a line into a document makes it
such a document.  Empty lines carry nothing and are counted, not shipped.

A container log's lines come framed (:class:`~.items.Framed`): each is the container's own line,
joined from the runtime's parts; its document also gets the container's metadata (from the
:class:`~.items.Source`), ``stream``, and the runtime's time as ``@timestamp`` when the line
has none.  Its ``log.offset`` and ``_id`` are those of its first part in the outer file.

A :class:`Batch` is a value, frozen when it is emitted: one request body and per-document
arrays, referring to its files only by :class:`~.items.Source` (id and path), never by
anything the reader still owns.  Holding the body once (not an object per document) is what
keeps many batches in flight cheap in memory; :meth:`Batch.packed` holds it gzipped, a
fifteenth of that for Amebo's records, which is what lets a distant cluster have many
requests in flight in little memory.
"""

from __future__ import annotations

import operator
import time
import zlib
from array import array
from bisect import bisect_left, bisect_right
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from functools import partial
from itertools import accumulate, repeat
from typing import Any

import msgspec
import orjson

try:  # lines' operations made in C, at once (_unwrap.c, where it was built; see .formats)
    from ._unwrap import line_starts as _c_line_starts
    from ._unwrap import operations as _c_operations
except ImportError:  # (where it could not be built: the same operations, %-formatted, and no runs)
    _c_operations = None  # type: ignore[assignment]

try:  # ISA-L: gzip streams the size of zlib's level 1 at about five times its speed
    from isal.isal_zlib import compress as _gzip_compress
except ImportError:  # (a platform without its wheel: zlib's, the same format)
    from zlib import compress as _gzip_compress

from ..render import timestamp_now
from .items import Chunk, Framed, LongLine, Source, Unwrapped

__all__ = ["Batch", "Batcher", "ReadStats"]

_ACTION_END = b'"}}\n'
_OFFSET_KEY = b',"log.offset":'


class _Probe(msgspec.Struct):
    """What the fast path needs to know of a line; decoding it checks the whole line is one
    JSON object (every value is parsed, only these keys are kept)."""

    timestamp: object = msgspec.field(name="@timestamp", default=msgspec.UNSET)
    file_path: object = msgspec.field(name="log.file.path", default=msgspec.UNSET)
    offset: object = msgspec.field(name="log.offset", default=msgspec.UNSET)
    host_name: object = msgspec.field(name="host.name", default=msgspec.UNSET)


class _ContainerProbe(_Probe):
    """The same, for a container's line: also the keys its document gets (ours replace them)."""

    stream: object = msgspec.field(name="stream", default=msgspec.UNSET)
    c_id: object = msgspec.field(name="container.id", default=msgspec.UNSET)
    c_name: object = msgspec.field(name="container.name", default=msgspec.UNSET)
    c_image: object = msgspec.field(name="container.image.name", default=msgspec.UNSET)
    k_ns: object = msgspec.field(name="kubernetes.namespace", default=msgspec.UNSET)
    k_pod: object = msgspec.field(name="kubernetes.pod.name", default=msgspec.UNSET)
    k_uid: object = msgspec.field(name="kubernetes.pod.uid", default=msgspec.UNSET)
    k_container: object = msgspec.field(name="kubernetes.container.name", default=msgspec.UNSET)


class _Never(msgspec.Struct, forbid_unknown_fields=True):
    """No JSON value decodes as this: a field of this type makes decoding fail if present."""

    never_present_in_a_log_line: int


class _Plain(msgspec.Struct, gc=False):
    """The common line, in one decode and no test after: a JSON object with an ``@timestamp``
    and none of the keys the shipper adds.  Anything else fails to decode (and goes to the
    lenient :class:`_Probe`, which says why)."""

    timestamp: object = msgspec.field(name="@timestamp")
    file_path: _Never = msgspec.field(name="log.file.path", default=None)  # type: ignore[assignment]
    offset: _Never = msgspec.field(name="log.offset", default=None)  # type: ignore[assignment]
    host_name: _Never = msgspec.field(name="host.name", default=None)  # type: ignore[assignment]


class _PlainContainer(_Plain, gc=False):
    """The same, for a container's line: also none of the keys its document gets."""

    stream: _Never = msgspec.field(name="stream", default=None)  # type: ignore[assignment]
    c_id: _Never = msgspec.field(name="container.id", default=None)  # type: ignore[assignment]
    c_name: _Never = msgspec.field(name="container.name", default=None)  # type: ignore[assignment]
    c_image: _Never = msgspec.field(name="container.image.name", default=None)  # type: ignore[assignment]
    k_ns: _Never = msgspec.field(name="kubernetes.namespace", default=None)  # type: ignore[assignment]
    k_pod: _Never = msgspec.field(name="kubernetes.pod.name", default=None)  # type: ignore[assignment]
    k_uid: _Never = msgspec.field(name="kubernetes.pod.uid", default=None)  # type: ignore[assignment]
    k_container: _Never = msgspec.field(name="kubernetes.container.name", default=None)  # type: ignore[assignment]


_UNSET = msgspec.UNSET
_FIRST = operator.itemgetter(0)


class _Positions:
    """A packed batch's offsets or ends, held gzipped (8 bytes a position, a fifth of that
    compressed: held by the dozen, they would be 40% of a packed batch); unpacked on first
    use, as the body is (a partial acknowledgement, a retry's log, a dead letter)."""

    __slots__ = ("_n", "_packed", "_positions")

    def __init__(self, positions: array[int]) -> None:
        self._n = len(positions)
        self._packed = _gzip_compress(positions.tobytes(), 1)
        self._positions: array[int] | None = None

    @classmethod
    def of(cls, positions: array[int] | _Positions) -> array[int] | _Positions:
        return positions if isinstance(positions, _Positions) or not positions else cls(positions)

    def _array(self) -> array[int]:
        found = self._positions
        if found is None:
            found = array("q")
            found.frombytes(zlib.decompress(self._packed))
            self._positions = found  # (two threads may both unpack: the same value)
        return found

    def __len__(self) -> int:
        return self._n

    def __getitem__(self, i: int) -> int:
        return self._array()[i]

    def __iter__(self) -> Iterator[int]:
        return iter(self._array())


@dataclass
class ReadStats:
    """Counts kept by the reading side."""

    lines: int = 0
    bytes: int = 0
    empty: int = 0
    parse_failures: int = 0
    truncated: int = 0


class Batch:
    """Documents ready to send, with what is needed to acknowledge and dead-letter each: a
    value, frozen when the batcher emits it.

    The documents' operations (action line and source line each) are kept as one body, the
    request as it is sent: a retry or a split sends slices of it.  Per document: its file
    generation (:class:`~.items.Source`), its offset and the offset just past its line."""

    __slots__ = (
        "_n",
        "_raw",
        "_runs",
        "_starts",
        "body",
        "created",
        "ends",
        "gzipped",
        "offsets",
        "originals",
        "raw_nbytes",
        "source_ends",
        "stamped",
    )

    body: bytes  # the request body as sent: the operations, or (gzipped) their gzip stream
    gzipped: bool
    raw_nbytes: int  # the operations' bytes, uncompressed
    _raw: bytes | None  # the operations, when the body is gzipped and they were needed
    _n: int
    _starts: array[int] | None  # where each operation starts in the body (found when first needed)
    _runs: tuple[tuple[int, Source], ...]  # (first document, its source): runs of documents of one file
    offsets: array[int] | _Positions
    ends: array[int] | _Positions
    source_ends: dict[str, int]
    stamped: dict[int, int]
    originals: dict[int, bytes]
    created: float

    def __init__(
        self,
        ops: list[bytes],
        sources: list[Source] | list[tuple[int, Source]],
        offsets: list[int],
        ends: list[int],
        source_ends: dict[str, int],
        stamped: dict[int, int] | None = None,
        originals: dict[int, bytes] | None = None,
        created: float | None = None,
    ) -> None:
        set_ = object.__setattr__
        set_(self, "body", b"".join(ops))
        set_(self, "gzipped", False)
        set_(self, "raw_nbytes", len(self.body))
        set_(self, "_raw", None)
        set_(self, "_n", len(ops))
        set_(self, "_starts", None)
        if sources and isinstance(sources[0], Source):  # one per document: made into runs
            runs: list[tuple[int, Source]] = []
            for i, src in enumerate(sources):
                if not runs or runs[-1][1] is not src:
                    runs.append((i, src))
            sources = runs
        set_(self, "_runs", tuple(sources))
        set_(self, "offsets", array("q", offsets))
        set_(self, "ends", array("q", ends))
        set_(self, "source_ends", dict(source_ends))  # per uid: read end, empty lines included
        set_(self, "stamped", stamped or {})  # doc -> bytes of the @timestamp the shipper added
        set_(self, "originals", originals or {})  # doc -> its line, where the doc was rebuilt
        set_(self, "created", time.monotonic() if created is None else created)

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f"a Batch is a value: {name} cannot be changed")

    def packed(self, level: int = 1) -> Batch:
        """This batch with its body gzipped at *level* (1, as Filebeat's and Logstash's
        default: 15x smaller for Amebo's records; with ISA-L, about 2.6 GB/s).  A new value:
        this one is left as it is.  Retries, splits and dead letters of the packed batch
        decompress it first."""
        if self.gzipped:
            return self
        out = object.__new__(Batch)
        set_ = object.__setattr__
        for name in Batch.__slots__:
            set_(out, name, getattr(self, name))
        set_(out, "body", _gzip_compress(self.body, level, wbits=31))  # 31: the gzip container
        set_(out, "gzipped", True)
        set_(out, "_raw", None)
        # held many at a time, a fifteenth of their size: the positions would be 40% of it
        set_(out, "offsets", _Positions.of(self.offsets))
        set_(out, "ends", _Positions.of(self.ends))
        return out

    def _operations(self) -> bytes:
        """The operations, uncompressed (a packed batch decompresses them on first use)."""
        if not self.gzipped:
            return self.body
        raw = self._raw
        if raw is None:
            raw = zlib.decompress(self.body, 31)
            object.__setattr__(self, "_raw", raw)
        return raw

    def __len__(self) -> int:
        return self._n

    def _op_starts(self) -> array[int]:
        """Where each operation starts in the body, and where the body ends: every operation is
        two lines (its action and its source, one JSON object each, with no raw newline in
        either), so the operations start after every second newline.  Found on first use only
        (a retry, a split, a dead letter): the common batch never needs it."""
        starts = self._starts
        if starts is None:
            body = self._operations()
            starts = array("q", [0])
            at = -1
            for _ in range(self._n):
                at = body.index(b"\n", body.index(b"\n", at + 1) + 1)
                starts.append(at + 1)
            object.__setattr__(self, "_starts", starts)
        return starts

    @property
    def nbytes(self) -> int:
        """The bytes of the body as sent (gzipped, when packed)."""
        return len(self.body)

    def source(self, i: int) -> Source:
        """The file generation document *i* was read from."""
        runs = self._runs
        k = bisect_right(runs, i, key=lambda run: run[0]) - 1
        return runs[k][1]

    def op(self, i: int) -> bytes:
        """Document *i*'s bulk operation: its action line and its source line."""
        starts = self._op_starts()
        return self._operations()[starts[i] : starts[i + 1]]

    def body_of(self, indices: Sequence[int] | None = None) -> bytes:
        """The bulk request body (uncompressed) for all documents, or for those at *indices*."""
        if indices is None or len(indices) == len(self):
            return self._operations()
        starts = self._op_starts()
        body = self._operations()
        return b"".join([body[starts[i] : starts[i + 1]] for i in indices])

    def request(self, indices: Sequence[int]) -> tuple[bytes, bool, int]:
        """What to send for the documents at *indices*: (body, whether it is gzipped, its
        size uncompressed).  All of them: the body as it is held (gzipped, when packed); some
        (a retry, a split): their operations, uncompressed."""
        if len(indices) == self._n:
            return self.body, self.gzipped, self.raw_nbytes
        body = self.body_of(indices)
        return body, False, len(body)

    def document_id(self, i: int) -> str:
        """Document *i*'s ``_id``, from its action line."""
        action = orjson.loads(self.op(i).split(b"\n", 1)[0])
        return str(next(iter(action.values()))["_id"])

    def original_line(self, i: int) -> bytes:
        """The line document *i* was made from (its first bytes, for a truncated line)."""
        found = self.originals.get(i)
        if found is not None:
            return found
        source = self.op(i).split(b"\n", 2)[1]
        k = source.index(b",", source.index(_OFFSET_KEY) + len(_OFFSET_KEY))
        rest = source[k + 1 :]
        stamped = self.stamped.get(i)
        if stamped is not None:
            return b"{" + rest[stamped:]
        if self.source(i).framed and rest.startswith(b'"stream":"'):  # the runtime's stream, ours
            rest = rest[rest.index(b'",', 10) + 2 :]
        return b"{" + rest

    def settled_ends(self, settled: bytearray) -> dict[str, tuple[int, bool]]:
        """Per uid: the offset past the last line settled with every line before it settled,
        and whether all of the uid's lines in this batch were settled.

        When every document of a uid is settled, the end is the batch's read end for it
        (which covers trailing empty lines)."""
        if settled.count(0) == 0:
            return {uid: (end, True) for uid, end in self.source_ends.items()}
        out: dict[str, tuple[int, bool]] = {}
        blocked: set[str] = set()
        prefix: dict[str, int] = {}
        runs = self._runs
        for k, (first, src) in enumerate(runs):
            uid = src.uid
            if uid in blocked:
                continue
            last = runs[k + 1][0] if k + 1 < len(runs) else self._n
            unsettled = settled.find(0, first, last)
            if unsettled < 0:
                prefix[uid] = self.ends[last - 1]
            else:
                if unsettled > first:
                    prefix[uid] = self.ends[unsettled - 1]
                blocked.add(uid)
        for uid, end in self.source_ends.items():
            if uid in blocked:
                out[uid] = (prefix.get(uid, 0), False)
            else:
                out[uid] = (end, True)
        return out


@dataclass(eq=False)
class _Filling:
    """The batch being filled: the batcher's own, never handed out."""

    ops: list[bytes] = field(default_factory=list)
    runs: list[tuple[int, Source]] = field(default_factory=list)  # (first document, source)
    offsets: list[int] = field(default_factory=list)
    ends: list[int] = field(default_factory=list)
    source_ends: dict[str, int] = field(default_factory=dict)
    stamped: dict[int, int] = field(default_factory=dict)
    originals: dict[int, bytes] = field(default_factory=dict)
    nbytes: int = 0
    created: float = field(default_factory=time.monotonic)

    def freeze(self) -> Batch:
        return Batch(
            self.ops,
            self.runs,
            self.offsets,
            self.ends,
            self.source_ends,
            self.stamped,
            self.originals,
            self.created,
        )


def _is_utf8(data: bytes) -> bool:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


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
    """Turns chunks of lines into batches; hands each full one to *emit*."""

    def __init__(
        self,
        emit: Callable[[Batch], None],
        *,
        host_name: str,
        batch_size: int,
        batch_bytes: int,
        max_line_bytes: int,
        stats: ReadStats,
        with_metadata: bool = True,
    ) -> None:
        self._emit = emit
        self.with_metadata = with_metadata
        self.host_name = host_name
        self.host_json = orjson.dumps(host_name)
        self.batch_size = batch_size
        self.batch_bytes = batch_bytes
        self.max_line_bytes = max_line_bytes
        self.stats = stats
        self.batch = _Filling()
        self._last_ends: dict[str, int] = {}  # what the last batch emitted acknowledges, per generation
        self._format_cache: dict[tuple[bytes, str, bytes], tuple[bytes, bytes, bytes, bytes]] = {}
        self._probe = msgspec.json.Decoder(_Probe).decode
        self._plain = msgspec.json.Decoder(_Plain).decode
        self._container_probe = msgspec.json.Decoder(_ContainerProbe).decode
        self._plain_container = msgspec.json.Decoder(_PlainContainer).decode
        self._streams: dict[str, bytes] = {}  # stream -> its "stream":"..." member

    def _formats(self, source: Source) -> tuple[bytes, bytes]:
        """The %-formats of *source*'s operations: ``(offset, offset, line after its {)`` and
        ``(offset, offset, members added, line after its {)``: its action, then
        ``{"log.file.path":...,"host.name":...,<container metadata>"log.offset":N,``."""
        pieces = self._pieces(source)
        return pieces[0], pieces[1]

    def _pieces(self, source: Source) -> tuple[bytes, bytes, bytes, bytes]:
        """:meth:`_formats`, and the two constant pieces they are made of: the action up to
        the offset, and from there to the offset again (for :func:`_unwrap.operations`)."""
        # (keyed by what they are made of: hashing the Source itself, a dataclass, costs 280 ns)
        key = (source.action_prefix, source.path, source.meta)
        pieces = self._format_cache.get(key)
        if pieces is None:
            middle = (
                _ACTION_END
                + b'{"log.file.path":'
                + orjson.dumps(source.path)
                + b',"host.name":'
                + self.host_json
                + (b"," + source.meta[:-1] if source.meta else b"")
                + _OFFSET_KEY
            )
            head = source.action_prefix.replace(b"%", b"%%") + b"%d" + middle.replace(b"%", b"%%") + b"%d,"
            pieces = (head + b"%s\n", head + b"%s%s\n", source.action_prefix, middle)
            if len(self._format_cache) > 4096:
                self._format_cache.clear()
            self._format_cache[key] = pieces
        return pieces

    def pending(self) -> bool:
        """Whether the batch being filled holds anything to emit: documents, or an offset to
        acknowledge past the one the last batch emitted acknowledges (the end of empty lines,
        of a cut line's skipped parts; not the same offset again, as when a batch just filled
        by the last line of what was added is followed by that line's end)."""
        b = self.batch
        if b.ops:
            return True
        last = self._last_ends
        return any(end > last.get(uid, 0) for uid, end in b.source_ends.items())

    def flush(self) -> None:
        """Emit the batch being filled, if it has anything (else let go of what it would
        acknowledge again)."""
        if self.pending():
            filled, self.batch = self.batch, _Filling()
            self._last_ends = filled.source_ends
            self._emit(filled.freeze())
        else:
            self.batch.source_ends.clear()

    def add(self, item: Chunk | LongLine | Framed | Unwrapped) -> None:
        if isinstance(item, Chunk):
            self._add_chunk(item)
        elif isinstance(item, Unwrapped):
            self._add_unwrapped(item)
        elif isinstance(item, Framed):
            self._add_framed(item)
        else:
            self._add_long(item)

    def _add_long(self, item: LongLine) -> None:
        src = item.source
        self.stats.lines += 1
        self.stats.truncated += 1
        self.stats.bytes += item.length + 1
        head = item.head[:-1] if item.head.endswith(b"\r") else item.head
        b = self.batch
        b.originals[len(b.ops)] = head
        self._append(
            src,
            item.offset,
            item.offset + item.length + 1,
            self._op(src, item.offset, self._truncated(head, item.length)),
        )

    def _append(self, src: Source, offset: int, end: int, op: bytes) -> None:
        b = self.batch
        runs = b.runs
        if not runs or runs[-1][1] is not src:
            runs.append((len(b.ops), src))
        b.ops.append(op)
        b.offsets.append(offset)
        b.ends.append(end)
        b.source_ends[src.uid] = end
        b.nbytes += len(op)
        if len(b.ops) >= self.batch_size or b.nbytes >= self.batch_bytes:
            self.flush()

    def _add_chunk(self, chunk: Chunk) -> None:
        if not self.with_metadata:
            self._add_records(chunk)
            return
        data = chunk.data
        self.stats.bytes += len(data)
        # The common chunk, told by a few tests over all of it: UTF-8, no \r, every line
        # starting with { (so none empty), none over the limit.  Its lines need one decode each.
        if data.startswith(b"{") and b"\r" not in data and (data.isascii() or _is_utf8(data)):
            lines = data.split(b"\n")
            del lines[-1]  # (after the last newline)
            try:  # (the first bytes of all lines, as one string: 10x faster than counting "\n{")
                firsts = bytes(map(_FIRST, lines))
            except IndexError:  # an empty line
                firsts = b""
            if (
                firsts
                and not firsts.strip(b"{")
                # (a chunk is a read of 1 MiB and the line it began in: often over the limit)
                and (len(data) <= self.max_line_bytes or max(map(len, lines)) <= self.max_line_bytes)
            ):
                self._add_plain_lines(chunk, lines)
                return
        self._add_lines(chunk)

    def _add_plain_lines(self, chunk: Chunk, lines: list[bytes]) -> None:
        """The fast path: each line is a JSON object with an @timestamp and none of the
        metadata keys (one decode says so), so the metadata is spliced in, nothing is
        re-serialized; a line that is not gets the careful way (:meth:`_line_op`)."""
        src = chunk.source
        fmt, _, prefix, middle = self._pieces(src)
        # every line's operation at once, as if each were the common line: in C where it is built
        if _c_operations is not None:
            starts = _c_line_starts(lines, chunk.offset)
            all_ops = _c_operations(lines, starts, prefix, middle, b"")
        else:
            starts = list(accumulate((len(line) + 1 for line in lines), initial=chunk.offset))
            all_ops = [fmt % (start, start, line[1:]) for start, line in zip(starts, lines, strict=False)]
        self._add_ops(src, lines, all_ops, starts, repeat(self._plain), partial(self._line_op, src=src))

    def _add_ops(
        self,
        src: Source,
        lines: list[bytes],
        all_ops: list[bytes],
        starts: list[int],
        checks: Iterable[Callable[[bytes], object]],
        careful: Callable[..., bytes],
    ) -> None:
        """The hot loop of the fast paths: *lines* of *src* (each starting at ``starts[i]`` and
        ending where the next starts; *starts* has one more), their operations made at once as
        if each were the common line; one decode per line (the next of *checks*) says it is,
        and any line it fails goes the careful way: ``careful(b, start=, line=, index=)`` makes
        its operation, as document *index* of batch *b*.  Batches fill up to the count and byte
        limits."""
        limit_n, limit_b = self.batch_size, self.batch_bytes
        last = starts[-1]
        b = self.batch
        if not b.runs or b.runs[-1][1] is not src:
            b.runs.append((len(b.ops), src))
        ops, offsets, ends = b.ops, b.offsets, b.ends
        nbytes = b.nbytes
        for line, op, start, end, check in zip(lines, all_ops, starts, starts[1:], checks, strict=False):
            try:
                check(line)
            except Exception:  # not the common line (ValidationError, DecodeError, too deep...)
                op = careful(b, start=start, line=line, index=len(ops))
            ops.append(op)
            offsets.append(start)
            ends.append(end)
            nbytes += len(op)
            if len(ops) >= limit_n or nbytes >= limit_b:
                b.nbytes = nbytes
                b.source_ends[src.uid] = end
                self.flush()
                b = self.batch
                if end < last:
                    b.runs.append((0, src))
                ops, offsets, ends = b.ops, b.offsets, b.ends
                nbytes = 0
        b.nbytes = nbytes
        if ops:  # (else the last line filled a batch, which acknowledges this far already)
            b.source_ends[src.uid] = last
        self.stats.lines += len(lines)

    def _line_op(self, b: _Filling, src: Source, start: int, line: bytes, index: int) -> bytes:
        """The operation of a line that is not the common one (it has no @timestamp, has one of
        our keys, is not a JSON object, not UTF-8...), as document *index* of batch *b*."""
        if len(line) <= self.max_line_bytes and line[0] == 0x7B and line[1:2] == b'"':
            try:
                found = self._probe(line)
                if not line.isascii():
                    line.decode("utf-8")
            except Exception:  # DecodeError, UnicodeDecodeError, RecursionError...: the slow path
                found = None
            if (
                found is not None
                and found.file_path is _UNSET
                and found.offset is _UNSET
                and found.host_name is _UNSET
                and found.timestamp is _UNSET
            ):
                read_time = b'"@timestamp":"' + timestamp_now().encode() + b'",'
                b.stamped[index] = len(read_time)
                return self._formats(src)[1] % (start, start, read_time, line[1:])
        b.originals[index] = line
        return self._slow_op(src, start, line, self.max_line_bytes)

    def _add_lines(self, chunk: Chunk) -> None:
        """Any chunk, line by line: empty lines, \r\n endings, lines over the limit, ..."""
        src = chunk.source
        uid = src.uid
        offset = chunk.offset
        fmt = self._formats(src)[0]
        b = self.batch
        lines = empty = 0
        for raw in chunk.data.split(b"\n")[:-1]:
            start = offset
            offset += len(raw) + 1
            lines += 1
            line = raw[:-1] if raw[-1:] == b"\r" else raw
            if not line:
                empty += 1
                self.batch.source_ends[uid] = offset
                continue
            b = self.batch
            index = len(b.ops)
            try:
                plain_line = len(line) <= self.max_line_bytes and line[0] == 0x7B and line[1:2] == b'"'
                if plain_line:
                    self._plain(line)
                    if not line.isascii():
                        line.decode("utf-8")
            except Exception:
                plain_line = False
            op = fmt % (start, start, line[1:]) if plain_line else self._line_op(b, src, start, line, index)
            self._append(src, start, offset, op)
        if lines:
            self.batch.source_ends[uid] = offset
        self.stats.lines += lines
        self.stats.empty += empty

    def _add_framed(self, item: Framed) -> None:
        """A container log's lines: each becomes a document as a plain line would, with the
        container's metadata and the runtime's stream and time; the batch may acknowledge up
        to where no line still being joined starts (:attr:`Framed.covered`).

        The common line (a JSON object with an @timestamp and none of the keys its document
        gets, UTF-8, not cut) takes one decode; any other goes to :meth:`_framed_op`."""
        src = item.source
        self.stats.bytes += item.nbytes
        fmt = self._formats(src)[1]
        plain = self._plain_container
        max_len = self.max_line_bytes
        limit_n, limit_b = self.batch_size, self.batch_bytes
        streams = self._streams
        covered = item.covered
        records = item.records
        b = self.batch
        if records and (not b.runs or b.runs[-1][1] is not src):
            b.runs.append((len(b.ops), src))
        ops, offsets, ends = b.ops, b.offsets, b.ends
        nbytes = b.nbytes
        empty = 0
        flushed: int | None = None  # what the last batch filled here acknowledges
        for k, (start, end, line, when, stream, cut) in enumerate(records):
            if not line and not cut:
                empty += 1
                continue
            added = streams.get(stream)
            if added is None:
                added = streams[stream] = b'"stream":' + orjson.dumps(stream) + b"," if stream else b""
            try:
                if cut or len(line) > max_len or line[0] != 0x7B or line[1] != 0x22:
                    raise ValueError
                plain(line)
                if not line.isascii():
                    line.decode("utf-8")
                op = fmt % (start, start, added, line[1:])
            except Exception:  # not the common line: the careful way
                op = self._framed_op(b, src, start, line, when, stream, cut, added, len(ops))
            ops.append(op)
            offsets.append(start)
            ends.append(end)
            nbytes += len(op)
            if len(ops) >= limit_n or nbytes >= limit_b:
                b.nbytes = nbytes
                # after this record, the batch may acknowledge up to the next one's start
                flushed = min(records[k + 1][0], covered) if k + 1 < len(records) else covered
                b.source_ends[src.uid] = flushed
                self.flush()
                b = self.batch
                if k + 1 < len(records):
                    b.runs.append((0, src))
                ops, offsets, ends = b.ops, b.offsets, b.ends
                nbytes = 0
        b.nbytes = nbytes
        if ops or flushed != covered:
            # (also with no records: the rest of a cut line; not when the last record filled a
            # batch that acknowledges this far already)
            b.source_ends[src.uid] = covered
        self.stats.lines += len(records)
        self.stats.empty += empty

    def _add_unwrapped(self, item: Unwrapped) -> None:
        """A container's whole lines, unwrapped in bulk (:class:`~.formats.Run`): the records
        :meth:`_add_framed` would be given, as columns, all on one stream and none cut.  When
        every line starts with ``{"`` (the common case) their operations are made at once, in C,
        as the common line's would be, and one decode each says it is (as the plain path's);
        any line that fails it, and a run with other lines, go the careful way."""
        run = item.run
        src = item.source
        if not run.objects:
            self._add_framed(Framed(src, run.records(), run.end, item.nbytes))
            return
        self.stats.bytes += item.nbytes
        _, _, prefix, middle = self._pieces(src)
        stream = run.stream
        added = self._streams.get(stream)
        if added is None:
            added = self._streams[stream] = b'"stream":' + orjson.dumps(stream) + b","
        starts = run.starts
        # every line's operation at once, as if each were the common line (each starts with {";
        # a Run is made only where the C unwrapper is built, and this with it)
        all_ops = _c_operations(run.lines, starts, prefix, middle, added)

        def careful(b: _Filling, *, start: int, line: bytes, index: int) -> bytes:
            when = run.time(bisect_left(starts, start))  # (only a line without its own @timestamp needs it)
            return self._framed_op(b, src, start, line, when, stream, 0, added, index)

        # one decode a line says it is the common one: the plain file's, but for the lines that
        # may hold a key the container's document gets (the unwrapper says which, at no cost;
        # the longer decode that looks for them too is 60% slower)
        checks = [self._plain] * len(run.lines)
        for i in run.keyed:
            checks[i] = self._plain_container
        self._add_ops(src, run.lines, all_ops, starts, checks, careful)

    def _framed_op(
        self,
        b: _Filling,
        src: Source,
        start: int,
        line: bytes,
        when: str,
        stream: str,
        cut: int,
        added: bytes,
        index: int,
    ) -> bytes:
        """The operation of a container's line that is not the common one, as document
        *index* of batch *b*: cut at the limit, without an @timestamp (the runtime's time is
        used), with keys its document gets, not one JSON object..."""
        if cut:
            self.stats.truncated += 1
            doc = self._truncated(line, cut if cut > 0 else None)
            if when:
                doc["@timestamp"] = when
            b.originals[index] = line
            return self._op(src, start, doc, stream)
        if len(line) <= self.max_line_bytes and line[0] == 0x7B and line[1:2] == b'"':
            try:
                found = self._container_probe(line)
                if not line.isascii():
                    line.decode("utf-8")
            except Exception:  # not one JSON object (or too deep): the slow path
                found = None
            if (
                found is not None
                and found.timestamp is _UNSET
                and found.file_path is _UNSET
                and found.offset is _UNSET
                and found.host_name is _UNSET
                and found.stream is _UNSET
                and found.c_id is _UNSET
                and found.c_name is _UNSET
                and found.c_image is _UNSET
                and found.k_ns is _UNSET
                and found.k_pod is _UNSET
                and found.k_uid is _UNSET
                and found.k_container is _UNSET
            ):
                added += b'"@timestamp":' + orjson.dumps(when or timestamp_now()) + b","
                b.stamped[index] = len(added)
                return self._formats(src)[1] % (start, start, added, line[1:])
        b.originals[index] = line
        return self._slow_op(src, start, line, self.max_line_bytes, when, stream)

    def _add_records(self, chunk: Chunk) -> None:
        """Lines that are already records (the in-process handler's): each becomes an
        operation as it is, its id the source's and its position in the stream."""
        src = chunk.source
        offset = chunk.offset
        for line in chunk.data.split(b"\n")[:-1]:
            start = offset
            offset += len(line) + 1
            if line:
                self._append(src, start, offset, b"%s%d%s%s\n" % (src.action_prefix, start, _ACTION_END, line))
        self.stats.lines += chunk.data.count(b"\n")
        if self.batch.ops:
            self.batch.source_ends[src.uid] = offset

    def _truncated(self, head: bytes, length: int | None) -> dict[str, Any]:
        """The document of a line of *length* bytes (None: more than the limit) cut to its
        first bytes, *head*."""
        size = f"{length} bytes" if length is not None else "longer than that"
        return {
            "@timestamp": timestamp_now(),
            "message": _safe_text(head[: self.max_line_bytes]),
            "error.message": f"the line is {size}, over --max-line-bytes {self.max_line_bytes}: "
            "only its first bytes were kept",
            "tags": ["truncated"],
        }

    def _op(self, src: Source, offset: int, doc: dict[str, Any], stream: str = "") -> bytes:
        """The bulk operation for *doc*, with the shipper's metadata and the container's (which
        replace the line's)."""
        doc.update({"log.file.path": src.path, "log.offset": offset, "host.name": self.host_name})
        if src.fields:
            doc.update(src.fields)
        if stream:
            doc["stream"] = stream
        return src.action_prefix + b"%d" % offset + _ACTION_END + orjson.dumps(doc) + b"\n"

    def _slow_op(self, src: Source, offset: int, line: bytes, max_len: int, when: str = "", stream: str = "") -> bytes:
        """The operation for a line that is not a plain JSON object line; never raises.  A
        container's line gets the runtime's *stream*, and its time *when* as ``@timestamp``
        when it has none."""
        now = when or timestamp_now()
        try:
            if len(line) > max_len:
                self.stats.truncated += 1
                doc = self._truncated(line, len(line))
                doc["@timestamp"] = now
                return self._op(src, offset, doc, stream)
            try:
                parsed: Any = orjson.loads(line)
                exc = None
            except orjson.JSONDecodeError as err:
                parsed, exc = None, err
            if type(parsed) is dict:  # an object with our metadata keys, or leading blanks
                parsed.setdefault("@timestamp", now)
                return self._op(src, offset, parsed, stream)
            self.stats.parse_failures += 1
            doc = {"@timestamp": now, "message": _safe_text(line), "error.message": _why_not_an_object(line, exc)}
            return self._op(src, offset, doc, stream)
        except Exception as err:  # nested too deep to re-encode, or anything else: still shipped
            self.stats.parse_failures += 1
            why = f"the line could not be turned into a document ({type(err).__name__}: {err})"
            doc = {"@timestamp": now, "message": _safe_text(line[:max_len]), "error.message": why}
            return self._op(src, offset, doc, stream)
