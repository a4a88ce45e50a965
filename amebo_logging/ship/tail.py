"""Discover files, know them across renames, truncations and copies, and read complete lines.

**Identity.**  A file is known by a hash of its first line (its *head*, at most 1,024 bytes),
as Filebeat's fingerprint mode knows files: a renamed or moved file keeps its offset, a
reused inode does not inherit another file's offset, and the copy that copytruncate leaves
continues where the original stopped.  A file is not read until its first line is complete.

**Checked at every read, not only at scans.**  Before reading what a file gained, the
reader checks that the bytes at its position still belong to what it read: the head is
unchanged, the byte before the position is a newline, a waiting partial line is still
there.  Otherwise the file was truncated or rewritten (copytruncate while shipping was
paused, say): the identity is let go, so the copy that holds the rest is found by its head
and resumed from the right place, and the live file is read from byte 0 as a new
generation.

**Discovery never stops.**  :meth:`Tailer.scan` runs on its own clock, also while sending is
blocked, and opens what it finds (holding the descriptor, so a later rename cannot hide
it).  At most *max_open* descriptors are held: finished, idle files are closed (and opened
again when they grow); the rest wait their turn.

**Container logs.**  A file in Docker's json-file or the CRI format (``--format``, or
detected from its first line) is framed by :mod:`.formats`: what leaves is the container's
own lines, joined from the runtime's parts, as :class:`Framed` values whose *covered* offset
never passes the first part of a line still being joined.  The file's identity, positions and
checks are those of the outer file, unchanged.

Only complete lines (ended by ``\\n``) leave this module, as values: the :class:`Source` (file
generation id and path), the byte offset and the bytes.  Nothing handed out is ever changed
afterwards, and nothing here is shared with another thread.
"""

from __future__ import annotations

import errno
import fnmatch
import glob
import hashlib
import os
import resource
import stat
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import orjson

from . import formats
from .formats import Framer, Record
from .offsets import Offsets

__all__ = ["Chunk", "Framed", "LongLine", "Source", "Tailer", "default_max_open"]

HEAD_BYTES = 1024
CHUNK_BYTES = 1 << 20
FD_RESERVE = 64  # descriptors left for the database, sockets, the dead letter, Python itself

_COMPRESSED = (
    (b"\x1f\x8b", "gzip"),
    (b"BZh", "bzip2"),
    (b"\xfd7zXZ\x00", "xz"),
    (b"\x28\xb5\x2f\xfd", "zstd"),
    (b"PK\x03\x04", "zip"),
)


@dataclass(frozen=True, slots=True)
class Source:
    """One file generation as the rest of the pipeline sees it: immutable."""

    uid: str
    path: str
    action_prefix: bytes  # the start of its documents' bulk action: {"create":{"_id":"<uid>-
    fields: tuple[tuple[str, str], ...] = ()  # added to every document: a container's metadata
    meta: bytes = b""  # the same as JSON members, each followed by a comma

    @classmethod
    def make(cls, uid: str, path: str, fields: dict[str, str] | None = None) -> Source:
        pairs = tuple(sorted((fields or {}).items()))
        meta = b"".join(orjson.dumps(k) + b":" + orjson.dumps(v) + b"," for k, v in pairs)
        return cls(uid, path, b'{"create":{"_id":"' + uid.encode() + b"-", pairs, meta)


@dataclass(slots=True)
class Chunk:
    """Complete lines of one file: *data* ends with ``\\n`` and starts at byte *offset*."""

    source: Source
    offset: int
    data: bytes


@dataclass(slots=True)
class Framed:
    """A container log's lines (:data:`.formats.Record` each, in order of their first byte),
    joined from the runtime's parts.  Everything before *covered* is in records handed out
    (a line still being joined starts at or after it)."""

    source: Source
    records: list[Record]
    covered: int
    nbytes: int  # outer bytes these records were read from


@dataclass(slots=True)
class LongLine:
    """A line longer than the limit: its first bytes, where it starts, and its whole length."""

    source: Source
    offset: int
    head: bytes
    length: int  # bytes of the line, newline excluded


@dataclass(eq=False, slots=True)
class _Reader:
    """One open file generation being read (the tailer's own, never handed out)."""

    path: str
    fd: int
    dev: int
    ino: int
    head: str
    uid: str
    generation: int
    source: Source
    read_pos: int  # the next byte to read
    line_start: int  # where the pending (incomplete) line starts: the end of what was handed out
    pending: bytes = b""
    long_line: tuple[int, bytes, int] | None = None  # (start, head, length so far) while skipping
    size: int = 0
    verified: tuple[int, int] = (-1, -1)  # (size, mtime_ns) when the content was last checked
    last_growth: float = field(default_factory=time.monotonic)
    at_eof: bool = False
    deleted: bool = False
    framer: Framer | None = None  # a container log's: joins the runtime's parts

    @property
    def partial_bytes(self) -> int:
        """Bytes read past the last complete line: a line still waiting for its newline (in a
        container log, also the parts of a line still being joined)."""
        partial = self.long_line[2] if self.long_line is not None else len(self.pending)
        if self.framer is not None:
            partial += self.line_start - self.framer.covered(self.line_start)
        return partial


def head_hash(fd: int) -> str | None:
    """The hash of the file's first line (or first HEAD_BYTES); None until that is complete."""
    head = os.pread(fd, HEAD_BYTES, 0)
    nl = head.find(b"\n")
    if nl >= 0:
        head = head[: nl + 1]
    elif len(head) < HEAD_BYTES:
        return None
    return hashlib.blake2b(head, digest_size=8).hexdigest()


def default_max_open() -> int:
    """Descriptors the tailer may hold: the process's soft limit less a reserve."""
    soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        soft = 65536
    return max(4, min(soft - FD_RESERVE, 16384))


@dataclass
class Waiting:
    """A matched file not being read, and why."""

    path: str
    reason: str  # "new", "empty", "no_first_line", "same_first_line", "unreadable", "no_descriptor"
    detail: str = ""  # the holder's path (same_first_line), the error (unreadable)
    holder: str = ""  # same_first_line: the uid being read by another file
    stamp: tuple[int, int, int] | None = None  # (size, mtime, ctime) when it last could not be opened
    fd: int | None = None  # same_first_line: held, so a rename or deletion cannot take it away

    def unchanged(self, st: os.stat_result) -> bool:
        return self.stamp == (st.st_size, st.st_mtime_ns, st.st_ctime_ns)


class Tailer:
    """Finds the files matching *patterns* (less *excludes*) and reads their new lines."""

    def __init__(
        self,
        patterns: Iterable[str],
        offsets: Offsets,
        *,
        excludes: Iterable[str] = (),
        max_line_bytes: int = 1 << 20,
        close_inactive: float = 300.0,
        max_open: int | None = None,
        once: bool = False,
        file_format: str = "json",
        containers: Iterable[str] = (),
    ) -> None:
        self.patterns = [os.path.abspath(os.path.expanduser(p)) for p in patterns]
        self.excludes = [os.path.abspath(os.path.expanduser(p)) for p in excludes]
        self.offsets = offsets
        self.max_line_bytes = max_line_bytes
        self.close_inactive = close_inactive
        self.max_open = max_open or default_max_open()
        self.once = once
        self.file_format = file_format  # json, docker, cri, or auto (per file, from its first line)
        self.containers = list(containers)  # container-name globs: other containers' logs are skipped
        self.readers: dict[tuple[int, int], _Reader] = {}  # by (dev, inode)
        self.waiting: dict[tuple[int, int], Waiting] = {}
        self.closed: dict[tuple[int, int], tuple[str, int, int]] = {}  # (path, size, mtime_ns) when closed idle
        self.skipped: dict[tuple[int, int], str] = {}  # compressed files: path
        self.other_containers: dict[tuple[int, int], str] = {}  # logs of containers not asked for: path
        self.done: set[tuple[int, int]] = set()  # --once: read to the end and closed
        self.events: list[tuple[str, str, dict[str, Any]]] = []  # (level, event, fields) for the shipper's log
        self._warned: set[tuple[Any, ...]] = set()
        self._turn = 0

    def _event(self, level: str, event: str, **fields: Any) -> None:
        self.events.append((level, event, fields))

    def _warn_once(self, key: tuple[Any, ...], event: str, **fields: Any) -> None:
        if key not in self._warned:
            self._warned.add(key)
            self._event("warning", event, **fields)

    # --- discovery ---------------------------------------------------------------------------
    def matching_paths(self) -> list[str]:
        found: dict[str, None] = {}
        for pattern in self.patterns:
            for path in sorted(glob.glob(pattern, recursive=True)):
                if not any(fnmatch.fnmatchcase(path, ex) for ex in self.excludes):
                    found[path] = None
        return list(found)

    def scan(self) -> None:
        """Pick up new and grown files; notice renames and deletions; open what can be."""
        seen: set[tuple[int, int]] = set()
        for path in self.matching_paths():
            try:
                st = os.stat(path)
            except OSError:
                continue
            if not stat.S_ISREG(st.st_mode):
                continue
            key = (st.st_dev, st.st_ino)
            seen.add(key)
            reader = self.readers.get(key)
            if reader is not None:
                if reader.path != path:
                    self._event("info", "file_renamed", **{"log.file.path": path, "previous_path": reader.path})
                    self._rename(reader, path)
                continue
            if key in self.skipped or key in self.done or key in self.other_containers:
                continue
            closed = self.closed.get(key)
            if closed is not None:
                if closed == (path, st.st_size, st.st_mtime_ns):
                    continue  # unchanged since it was closed
                del self.closed[key]
            if key not in self.waiting:
                self.waiting[key] = Waiting(path, "new")
            else:
                self.waiting[key].path = path
        for key in [k for k, w in self.waiting.items() if k not in seen and w.fd is None]:
            del self.waiting[key]
        for table in (self.closed, self.skipped, self.other_containers):
            for key in [k for k in table if k not in seen]:
                del table[key]
        self.done &= seen
        for key, reader in list(self.readers.items()):
            try:
                st = os.fstat(reader.fd)
            except OSError:
                continue
            if key not in seen and not reader.deleted and st.st_nlink == 0:
                reader.deleted = True
                self._event("info", "file_deleted", **{"log.file.path": reader.path})
            # Also at scans, not only at reads: a reader paused by a blocked pipeline must notice
            # a truncation, so the copy holding the rest can take its identity over.
            if (st.st_size, st.st_mtime_ns) != reader.verified:
                try:
                    problem = self._check_content(reader, st.st_size)
                except OSError:
                    continue
                if problem is not None:
                    self._supersede(reader, problem)
                else:
                    reader.verified = (st.st_size, st.st_mtime_ns)
        self._open_waiting()

    def _rename(self, reader: _Reader, path: str) -> None:
        reader.path = path
        fields = dict(reader.source.fields)
        if reader.framer is not None:  # a rotated container log: what its new path says, else its first
            fields = formats.container_fields(path) or fields
        reader.source = Source.make(reader.uid, path, fields)
        self.offsets.observe(reader.uid, path, reader.size)

    def _open_waiting(self) -> None:
        held = {r.uid for r in self.readers.values()}
        for key in list(self.waiting):
            waiting = self.waiting.get(key)
            if waiting is None or (waiting.reason == "same_first_line" and waiting.holder in held):
                continue
            if waiting.stamp is not None:
                try:
                    if waiting.unchanged(os.stat(waiting.path)):
                        continue  # still empty, unreadable...: nothing to try until it changes
                except OSError:
                    continue
            if waiting.fd is None and self._descriptors() >= self.max_open and not self._make_room():
                waiting.reason = "no_descriptor"
                self._warn_once(
                    ("max_open",),
                    "open_file_limit_reached",
                    max_open=self.max_open,
                    waiting_files=len(self.waiting),
                    reason="more files match than descriptors may be held; the rest are read as "
                    "finished files are closed (raise `ulimit -n`, or --max-open-files)",
                )
                return
            if self._open(waiting, key):
                self.waiting.pop(key, None)
            else:
                held = {r.uid for r in self.readers.values()}

    def _descriptors(self) -> int:
        return len(self.readers) + sum(1 for w in self.waiting.values() if w.fd is not None)

    @staticmethod
    def _stamp(waiting: Waiting) -> None:
        try:
            st = os.stat(waiting.path)
            waiting.stamp = (st.st_size, st.st_mtime_ns, st.st_ctime_ns)
        except OSError:
            waiting.stamp = None

    def _make_room(self) -> bool:
        """Close the least recently grown finished file to free a descriptor."""
        finished = [r for r in self.readers.values() if self._finished(r)]
        if not finished:
            return False
        self._close(min(finished, key=lambda r: r.last_growth), "to free a descriptor for a waiting file")
        return True

    def _open(self, waiting: Waiting, key: tuple[int, int]) -> bool:
        """Open the file if it can be read now; False to try again later."""
        path = waiting.path
        try:
            fd = waiting.fd if waiting.fd is not None else os.open(path, os.O_RDONLY | os.O_CLOEXEC)
            waiting.fd = None
        except FileNotFoundError:
            return True
        except OSError as exc:
            if exc.errno in (errno.EMFILE, errno.ENFILE):
                self.max_open = max(1, len(self.readers))
                waiting.reason = "no_descriptor"
                return False
            waiting.reason, waiting.detail = "unreadable", exc.strerror or str(exc)
            self._stamp(waiting)
            self._warn_once(
                (key, "unreadable", exc.errno),
                "file_unreadable",
                **{"log.file.path": path, "error.message": exc.strerror or str(exc)},
                reason="this file matches but cannot be read: fix its permissions",
            )
            return False
        try:
            st = os.fstat(fd)
            if (st.st_dev, st.st_ino) != key:  # replaced between the scan and now
                os.close(fd)
                return True
            head = head_hash(fd)
            magic = os.pread(fd, 6, 0) if head is not None else b""
        except OSError as exc:
            os.close(fd)
            waiting.reason, waiting.detail = "unreadable", exc.strerror or str(exc)
            return False
        if head is None:
            os.close(fd)
            waiting.reason = "empty" if st.st_size == 0 else "no_first_line"
            waiting.stamp = (st.st_size, st.st_mtime_ns, st.st_ctime_ns)
            return False
        kind = next((name for sig, name in _COMPRESSED if magic.startswith(sig)), None)
        if kind is not None:
            os.close(fd)
            self.skipped[key] = path
            self._event(
                "info",
                "file_skipped",
                **{"log.file.path": path},
                reason=f"{kind}-compressed: rotated logs are read before they are compressed "
                "(use logrotate's delaycompress), or exclude them with --exclude",
            )
            return True
        known = self.offsets.known(head)
        if known is not None and known.reading:
            # Held open: it is usually the copy copytruncate made, which a later rotation may
            # rename or compress away before the identity is free.
            waiting.fd = fd
            holder = next((r.path for r in self.readers.values() if r.uid == known.uid), "?")
            waiting.reason, waiting.detail, waiting.holder = "same_first_line", holder, known.uid
            return False
        framer, fields, file_format = self._framing(fd, path)
        if self.containers and framer is not None:
            name = fields.get("container.name") or fields.get("kubernetes.container.name") or ""
            if not any(fnmatch.fnmatchcase(name, glob_) for glob_ in self.containers):
                os.close(fd)
                self.other_containers[key] = path
                self._event(
                    "debug",
                    "file_skipped",
                    **{"log.file.path": path, "container.name": name},
                    reason="the container's name matches no --container",
                )
                return True
        position, generation, uid, how = self._resume(fd, path, key, st.st_size, head, known)
        reader = _Reader(
            path=path,
            fd=fd,
            dev=key[0],
            ino=key[1],
            head=head,
            uid=uid,
            generation=generation,
            source=Source.make(uid, path, fields),
            read_pos=position,
            line_start=position,
            size=st.st_size,
            framer=framer,
        )
        self.readers[key] = reader
        self.offsets.track(uid, path, st.st_size, position)
        self._event(
            "info", "file_opened", **{"log.file.path": path, "log.offset": position}, how=how, format=file_format
        )
        return True

    def _framing(self, fd: int, path: str) -> tuple[Framer | None, dict[str, str], str]:
        """The framer for the file's format (given, or detected from its first line), the
        container metadata its path gives, and the format's name."""
        name = self.file_format
        if name == "auto":
            try:
                name = formats.detect(os.pread(fd, formats.DETECT_BYTES, 0))
            except OSError:
                name = "json"
        framer = formats.framer_for(name, self.max_line_bytes)
        return framer, (formats.container_fields(path) if framer is not None else {}), name

    def _resume(
        self, fd: int, path: str, key: tuple[int, int], size: int, head: str, known: Any
    ) -> tuple[int, int, str, str]:
        """Where to read a newly opened file from: (position, generation, uid, how)."""
        if known is None:
            record = self.offsets.register(path, key[0], key[1], head, 0, size)
            return 0, record.generation, record.uid, "new"
        position = known.offset
        same_inode = (known.dev, known.ino) == key
        if size < position:
            if not same_inode:  # a copy made before the original grew further: all of it was shipped
                return position, known.generation, known.uid, "copy_already_shipped"
            why = "shorter than what was shipped"
        elif position > 0 and os.pread(fd, 1, position - 1) != b"\n":
            why = "the byte before the saved position is not a line end"
        else:
            return position, known.generation, known.uid, "resumed" if same_inode else "copy"
        self._event("info", "file_rewritten", **{"log.file.path": path, "log.offset": position}, reason=why)
        record = self.offsets.register(path, key[0], key[1], head, known.generation + 1, size)
        return 0, record.generation, record.uid, "new_generation"

    # --- reading -------------------------------------------------------------------------------
    def poll(self, max_bytes: int = 4 * CHUNK_BYTES) -> list[Chunk | LongLine | Framed]:
        """Read what the open files have gained, about *max_bytes* at most in all."""
        if self.waiting:
            self._open_waiting()
        out: list[Chunk | LongLine | Framed] = []
        budget = max_bytes
        readers = list(self.readers.values())
        if readers:  # start one file further each time, so a busy file cannot starve the others
            self._turn = (self._turn + 1) % len(readers)
            readers = readers[self._turn :] + readers[: self._turn]
        for reader in readers:
            if budget <= 0:
                break
            budget -= self._read(reader, min(budget, CHUNK_BYTES), out)
        return out

    def _read(self, r: _Reader, limit: int, out: list[Chunk | LongLine | Framed]) -> int:
        try:
            st = os.fstat(r.fd)
            r.deleted = r.deleted or st.st_nlink == 0
            r.size = st.st_size
            if (st.st_size, st.st_mtime_ns) != r.verified:
                problem = self._check_content(r, st.st_size)
                if problem is not None:
                    self._supersede(r, problem)
                    return 0
                r.verified = (st.st_size, st.st_mtime_ns)
            data = os.pread(r.fd, limit, r.read_pos) if st.st_size > r.read_pos else b""
        except OSError as exc:
            self._warn_once(
                (r.uid, "read", getattr(exc, "errno", None)),
                "file_read_failed",
                **{"log.file.path": r.path, "error.message": str(exc)},
            )
            return 0
        if not data:
            r.at_eof = True
            return 0
        r.at_eof = False
        r.last_growth = time.monotonic()
        r.read_pos += len(data)
        self._split(r, data, out)
        return len(data)

    def _check_content(self, r: _Reader, size: int) -> str | None:
        """Why the file no longer holds what was read from it, or None when it does."""
        if size < r.read_pos:
            return "its size dropped below what was read"
        head = head_hash(r.fd)
        if head != r.head:  # checked at any position: the identity was taken from this line
            return "it was emptied" if head is None else "its first line changed"
        if r.line_start > 0 and os.pread(r.fd, 1, r.line_start - 1) != b"\n":
            return "the byte before the read position is no longer a line end"
        if r.pending and os.pread(r.fd, len(r.pending), r.line_start) != r.pending:
            return "the line being read was overwritten"
        return None

    def _supersede(self, r: _Reader, reason: str) -> None:
        """*r*'s file was truncated or rewritten: let the identity go (a copy holding the rest
        continues it) and open the file again as what it now is."""
        self._event("info", "file_truncated", **{"log.file.path": r.path, "log.offset": r.line_start}, reason=reason)
        self._release(r)
        self.waiting[(r.dev, r.ino)] = Waiting(r.path, "new")
        self._open_waiting()

    def _split(self, r: _Reader, data: bytes, out: list[Chunk | LongLine | Framed]) -> None:
        """Cut what was read into complete lines (and the end of an over-long one being
        skipped); keep the rest pending.  A plain file's go out as they are; a container log's
        go to its framer (:meth:`_frame`)."""
        before = r.line_start
        long: LongLine | None = None
        if r.long_line is not None:  # skipping the rest of an over-long line
            start, head, length = r.long_line
            nl = data.find(b"\n")
            if nl < 0:
                r.long_line = (start, head, length + len(data))
                return
            r.long_line = None
            long = LongLine(r.source, start, head, length + nl)
            r.line_start = start + length + nl + 1
            data = data[nl + 1 :]
        lines_start = r.line_start
        lines = b""
        buf = r.pending + data if r.pending else data
        last = buf.rfind(b"\n")
        if last < 0:
            r.pending = buf
        else:
            lines = buf if last + 1 == len(buf) else buf[: last + 1]
            r.line_start += last + 1
            r.pending = buf[last + 1 :]
        if len(r.pending) > self.max_line_bytes:
            r.long_line = (r.line_start, r.pending[: self.max_line_bytes], len(r.pending))
            r.pending = b""
        if r.framer is not None:
            self._frame(r, r.framer, before, long, lines, lines_start, out)
            return
        if long is not None:
            out.append(long)
        if lines:
            out.append(Chunk(r.source, lines_start, lines))
        if r.line_start != before:
            self.offsets.handed(r.uid, r.line_start)

    def _frame(
        self,
        r: _Reader,
        framer: Framer,
        before: int,
        long: LongLine | None,
        lines: bytes,
        lines_start: int,
        out: list[Chunk | LongLine | Framed],
    ) -> None:
        """A container log's complete outer lines (read from *before* on) go to its framer;
        what it completes is handed out; the offsets may pass only what is in records handed
        out."""
        if r.line_start == before:
            return
        covered_before = framer.covered(before)
        records: list[Record] = []
        if long is not None:
            framer.feed_long(long.offset, long.head, long.length, records)
        if lines:
            records += framer.feed(lines, lines_start)
        covered = framer.covered(r.line_start)
        if records or covered > covered_before:  # (parts skipped after a cut line move it on too)
            if len(records) > 1 and any(records[i][0] > records[i + 1][0] for i in range(len(records) - 1)):
                records.sort(key=lambda rec: rec[0])
            out.append(Framed(r.source, records, covered, r.line_start - before))
        self.offsets.handed(r.uid, covered)

    # --- finishing ---------------------------------------------------------------------------------
    def _finished(self, r: _Reader) -> bool:
        """Read to the end (checked now: lines may have come since the last read) and
        everything handed out acknowledged."""
        if not (r.at_eof and self.offsets.settled(r.uid)):
            return False
        try:
            return os.fstat(r.fd).st_size <= r.read_pos
        except OSError:
            return True

    def blocking(self) -> list[Waiting]:
        """--once: matched files that could still be read in this run (the run waits for them)."""
        return [w for w in self.waiting.values() if w.reason in ("new", "no_descriptor", "same_first_line")]

    def all_read(self) -> bool:
        """--once: every open file read to its end and nothing left that could be opened."""
        return all(r.at_eof for r in self.readers.values()) and not self.blocking()

    def retire(self) -> None:
        """Close finished files: deleted ones are forgotten; idle ones are closed (and opened
        again when they grow); in --once, every finished one (a waiting copy may follow)."""
        now = time.monotonic()
        forget: list[str] = []
        for r in list(self.readers.values()):
            if not self._finished(r):
                continue
            idle = now - r.last_growth > self.close_inactive
            if r.deleted:
                if r.partial_bytes == 0 or idle:
                    # Read to the end; a last line that never got its newline is given up after
                    # close_inactive, to free the disk space.
                    self._release(r)
                    forget.append(r.uid)
                    fields: dict[str, Any] = {"log.file.path": r.path}
                    if r.partial_bytes:
                        fields["unfinished_line_bytes"] = r.partial_bytes
                    self._event("info", "file_forgotten", **fields)
            elif self.once and (r.partial_bytes == 0 or self._blocked_by(r)):
                self._release(r)
                self.done.add((r.dev, r.ino))
            elif idle:
                self._close(r, "idle for --close-inactive")
        if forget:
            self.offsets.forget(forget)

    def _blocked_by(self, r: _Reader) -> bool:
        return any(w.reason == "same_first_line" and w.detail == r.path for w in self.waiting.values())

    def _close(self, r: _Reader, reason: str) -> None:
        try:
            st = os.fstat(r.fd)
            self.closed[(r.dev, r.ino)] = (r.path, st.st_size, st.st_mtime_ns)
        except OSError:
            pass
        self._release(r)
        self._event("debug", "file_closed", **{"log.file.path": r.path}, reason=reason)

    def _release(self, r: _Reader) -> None:
        if self.readers.get((r.dev, r.ino)) is r:
            del self.readers[(r.dev, r.ino)]
        self.offsets.release(r.uid)
        try:
            os.close(r.fd)
        except OSError:
            pass

    # --- reporting ----------------------------------------------------------------------------------
    def files(self) -> list[dict[str, Any]]:
        """Every open file: path, uid, size, committed offset, partial line bytes (a snapshot)."""
        out = []
        for r in self.readers.values():
            out.append(
                {
                    "path": r.path,
                    "uid": r.uid,
                    "size": r.size,
                    "committed": self.offsets.committed(r.uid),
                    "read": r.line_start,
                    "partial": r.partial_bytes if r.at_eof else 0,
                    "at_eof": r.at_eof,
                }
            )
        return out

    def close(self) -> None:
        for r in list(self.readers.values()):
            self._release(r)
        for w in self.waiting.values():
            if w.fd is not None:
                os.close(w.fd)
                w.fd = None
