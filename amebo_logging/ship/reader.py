"""Reading one open file generation: read what it gained, cut complete lines, frame container logs.

A :class:`FileReader` is given its file's descriptor, its :class:`~.items.Source` and the
position to start from, once; it hands out only complete lines (ended by ``\\n``), as
values (:mod:`.items`), and keeps the rest:

* the part of a line still waiting for its newline (*pending*);
* the start and length of a line over the limit, whose first bytes were kept and whose
  rest is skipped without being held in memory;
* for a container log, its :class:`~.formats.Framer`, which joins the runtime's parts: what
  leaves says how far the offsets may go (:attr:`~.items.Framed.covered`).

Before reading what the file gained it can say whether the file still holds what was read
from it (:meth:`FileReader.changed`); what that means is :func:`.identity.changed`'s call.
It knows nothing of offsets, acknowledgements or other files.
"""

from __future__ import annotations

import os
import time

from .formats import Framer, Piece, Record, Run
from .identity import HEAD_BYTES, changed, head_hash
from .items import Chunk, Framed, Line, LongLine, Source, Unwrapped

__all__ = ["CHUNK_BYTES", "FileReader", "hand_out", "read_head"]

CHUNK_BYTES = 1 << 20


def read_head(fd: int) -> str | None:
    """The identity of the open file *fd* (see :func:`.identity.head_hash`)."""
    return head_hash(os.pread(fd, HEAD_BYTES, 0))


class FileReader:
    """One open file generation being read (never shared, never handed out)."""

    __slots__ = (
        "at_eof",
        "deleted",
        "fd",
        "framer",
        "head",
        "last_growth",
        "line_start",
        "long_line",
        "max_line_bytes",
        "pending",
        "read_pos",
        "size",
        "source",
        "verified",
    )

    def __init__(
        self, fd: int, source: Source, head: str, position: int, size: int, framer: Framer | None, max_line_bytes: int
    ) -> None:
        self.fd = fd
        self.source = source
        self.head = head
        self.read_pos = position  # the next byte to read
        self.line_start = position  # where the pending line starts: the end of what was handed out
        self.pending = b""
        self.long_line: tuple[int, bytes, int] | None = None  # (start, head, length so far) while skipping
        self.size = size
        self.verified = (-1, -1)  # (size, mtime_ns) when the content was last checked
        self.last_growth = time.monotonic()
        self.at_eof = False
        self.deleted = False
        self.framer = framer
        self.max_line_bytes = max_line_bytes

    @property
    def uid(self) -> str:
        return self.source.uid

    @property
    def partial_bytes(self) -> int:
        """Bytes read past the last complete line: a line still waiting for its newline (in a
        container log, also the parts of a line still being joined)."""
        partial = self.long_line[2] if self.long_line is not None else len(self.pending)
        if self.framer is not None:
            partial += self.line_start - self.framer.covered(self.line_start)
        return partial

    def changed(self, size: int) -> str | None:
        """Why the file (now *size* bytes) no longer holds what was read, or None.  Raises
        OSError when it cannot be read."""
        fd, start, pending = self.fd, self.line_start, self.pending
        before = os.pread(fd, 1, start - 1) if start > 0 else b""
        intact = not pending or os.pread(fd, len(pending), start) == pending
        return changed(size, self.read_pos, read_head(fd), self.head, start, before, intact)

    def finished(self) -> bool:
        """Read to the end, checked now (lines may have come since the last read)."""
        if not self.at_eof:
            return False
        try:
            return os.fstat(self.fd).st_size <= self.read_pos
        except OSError:
            return True

    def read(self, limit: int, out: list[Line]) -> int:
        """Read up to *limit* bytes at the read position and hand out the complete lines in
        them; the bytes read.  Raises OSError when the file cannot be read."""
        data = os.pread(self.fd, limit, self.read_pos) if self.size > self.read_pos else b""
        if not data:
            self.at_eof = True
            return 0
        self.at_eof = False
        self.last_growth = time.monotonic()
        self.read_pos += len(data)
        self._split(data, out)
        return len(data)

    def _split(self, data: bytes, out: list[Line]) -> None:
        """Cut what was read into complete lines (and the end of an over-long one being
        skipped); keep the rest pending.  A plain file's go out as they are; a container log's
        go to its framer (:meth:`_frame`)."""
        before = self.line_start
        long: LongLine | None = None
        if self.long_line is not None:  # skipping the rest of an over-long line
            start, head, length = self.long_line
            nl = data.find(b"\n")
            if nl < 0:
                self.long_line = (start, head, length + len(data))
                return
            self.long_line = None
            long = LongLine(self.source, start, head, length + nl)
            self.line_start = start + length + nl + 1
            data = data[nl + 1 :]
        lines_start = self.line_start
        lines = b""
        buf = self.pending + data if self.pending else data
        last = buf.rfind(b"\n")
        if last < 0:
            self.pending = buf
        else:
            lines = buf if last + 1 == len(buf) else buf[: last + 1]
            self.line_start += last + 1
            self.pending = buf[last + 1 :]
        if len(self.pending) > self.max_line_bytes:
            self.long_line = (self.line_start, self.pending[: self.max_line_bytes], len(self.pending))
            self.pending = b""
        if self.framer is not None:
            self._frame(self.framer, before, long, lines, lines_start, out)
            return
        if long is not None:
            out.append(long)
        if lines:
            out.append(Chunk(self.source, lines_start, lines))

    def _frame(
        self, framer: Framer, before: int, long: LongLine | None, lines: bytes, lines_start: int, out: list[Line]
    ) -> None:
        """A container log's complete outer lines (read from *before* on) go to its framer;
        what it completes is handed out; the offsets may pass only what is in records handed
        out."""
        if self.line_start == before:
            return
        covered_before = framer.covered(before)
        pieces = framer.frame(lines, lines_start) if lines else [[]]
        if long is not None:
            first = pieces[0]
            if isinstance(first, Run):
                records: list[Record] = []
                pieces.insert(0, records)
            else:
                records = first
            framer.feed_long(long.offset, long.head, long.length, records)
            # (the framer hands its own records out in order; a cut line's record, put last, may
            # start before some of them: then they are sorted, in linear time, nearly in order)
            if len(records) > 1:
                records.sort(key=lambda rec: rec[0])
        hand_out(self.source, framer, pieces, before, covered_before, self.line_start, out)

    def close(self) -> None:
        try:
            os.close(self.fd)
        except OSError:
            pass


def hand_out(
    source: Source,
    framer: Framer,
    pieces: list[Piece],
    before: int,
    covered_before: int,
    line_start: int,
    out: list[Line],
) -> None:
    """What *framer* made of a file's outer lines from *before* to *line_start* (*pieces*, in
    order), as the items handed out: a run as :class:`Unwrapped`; records as :class:`Framed`,
    covered up to where the next run starts (nothing before it is still being joined) or, the
    last, as far as the framer says.  *covered_before*: where it said before these lines."""
    boundary = before  # the outer bytes up to here are in what was handed out
    for i, piece in enumerate(pieces):
        if isinstance(piece, Run):
            out.append(Unwrapped(source, piece, piece.end - boundary))
            boundary = covered_before = piece.end
            continue
        last = i + 1 == len(pieces)
        after = None if last else pieces[i + 1]
        covered = after.starts[0] if isinstance(after, Run) else framer.covered(line_start)
        if piece or covered > covered_before:  # (parts skipped after a cut line move it on too)
            end = line_start if last else covered
            out.append(Framed(source, piece, covered, end - boundary))
            boundary, covered_before = end, covered
    if boundary < line_start:
        # the bytes of a part still being joined (after a run, or alone): read now, as the next
        # lines handed out begin after them; what the batch may acknowledge does not move
        out.append(Framed(source, [], framer.covered(line_start), line_start - boundary))
