"""Discover files, know them across renames and truncations, and read complete lines.

**Identity.**  A file is known by a hash of its first line (its *head*, at most 1,024 bytes),
as Filebeat's fingerprint mode knows files: a renamed or moved file keeps its identity and
offset, a reused inode does not inherit another file's offset, and the copy that
copytruncate leaves behind continues where the original stopped.  A file is not read until
its first line is complete.  When an open file's size drops below what was read, or its head
changes, it is a new *generation*, read from byte 0.  At most one open file reads an
identity at a time; a second file with the same head waits until the first is finished.

**Lines.**  Only complete lines (ended by ``\\n``) leave this module, with their byte
offsets.  A line longer than the limit is cut to its first *max_line_bytes* bytes and handed
out once its newline arrives; the bytes between are skipped, never held in memory.

**Ending.**  A deleted file is read to its end through the open descriptor, then closed and
forgotten once everything read was committed.  A file renamed out of the patterns is read
until it has been idle for *close_inactive* seconds.
"""

from __future__ import annotations

import fnmatch
import glob
import hashlib
import os
import stat
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from .state import StateStore

__all__ = ["Chunk", "LongLine", "Tailer", "TrackedFile"]

HEAD_BYTES = 1024
CHUNK_BYTES = 1 << 20


@dataclass(slots=True)
class Chunk:
    """Complete lines of one file: *data* ends with ``\\n`` and starts at byte *offset*."""

    file: TrackedFile
    offset: int
    data: bytes


@dataclass(slots=True)
class LongLine:
    """A line longer than the limit: its first bytes, where it starts, and its whole length."""

    file: TrackedFile
    offset: int
    head: bytes
    length: int  # bytes of the line, newline excluded


@dataclass(eq=False)
class TrackedFile:
    """One open file generation being read."""

    path: str
    fd: int
    dev: int
    ino: int
    head_hash: str
    generation: int
    uid: str
    read_pos: int  # the next byte to read
    line_start: int  # where the pending (incomplete) line starts
    pending: bytes = b""
    long_line: tuple[int, bytes, int] | None = None  # (start, head, length so far) while skipping
    size: int = 0
    last_growth: float = field(default_factory=time.monotonic)
    at_eof: bool = False
    deleted: bool = False
    committed: int = 0  # offset committed in the state store
    emitted: int = 0  # end of the last complete line handed out
    superseded: bool = False  # a newer generation of the file took over the descriptor
    action_prefix: bytes = b""

    def __post_init__(self) -> None:
        self.action_prefix = b'{"create":{"_id":"' + self.uid.encode() + b"-"

    @property
    def partial_bytes(self) -> int:
        """Bytes read past the last complete line: a line still waiting for its newline."""
        return self.long_line[2] if self.long_line is not None else len(self.pending)


def head_hash(fd: int) -> str | None:
    """The hash of the file's first line (or first HEAD_BYTES); None until that is complete."""
    head = os.pread(fd, HEAD_BYTES, 0)
    nl = head.find(b"\n")
    if nl >= 0:
        head = head[: nl + 1]
    elif len(head) < HEAD_BYTES:
        return None
    return hashlib.blake2b(head, digest_size=8).hexdigest()


class Tailer:
    """Finds the files matching *patterns* (less *excludes*) and reads their new lines."""

    def __init__(
        self,
        patterns: Iterable[str],
        state: StateStore,
        *,
        excludes: Iterable[str] = (),
        max_line_bytes: int = 1 << 20,
        close_inactive: float = 300.0,
    ) -> None:
        self.patterns = [os.path.abspath(os.path.expanduser(p)) for p in patterns]
        self.excludes = [os.path.abspath(os.path.expanduser(p)) for p in excludes]
        self.state = state
        self.max_line_bytes = max_line_bytes
        self.close_inactive = close_inactive
        self.files: dict[tuple[int, int], TrackedFile] = {}  # by (dev, inode)
        self.by_uid: dict[str, TrackedFile] = {}
        self.waiting: dict[tuple[int, int], str] = {}  # no complete first line yet, or identity busy
        self.events: list[tuple[str, dict[str, Any]]] = []  # for the shipper's own log
        self._turn = 0

    # --- discovery ---------------------------------------------------------------------------
    def matching_paths(self) -> list[str]:
        found: dict[str, None] = {}
        for pattern in self.patterns:
            for path in sorted(glob.glob(pattern)):
                if not any(fnmatch.fnmatchcase(path, ex) for ex in self.excludes):
                    found[path] = None
        return list(found)

    def scan(self) -> None:
        """Pick up new files; notice renames, deletions and rewrites of open ones."""
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
            tf = self.files.get(key)
            if tf is None:
                self.waiting[key] = path
                continue
            if tf.path != path:
                self.events.append(("file_renamed", {"log.file.path": path, "previous_path": tf.path}))
                tf.path = path
            try:
                head = head_hash(tf.fd)
            except OSError:
                continue
            if head is None:  # emptied (truncated) before its first line was rewritten
                self._let_go_emptied(tf, "it was emptied")
            elif head != tf.head_hash:
                self._new_generation(tf, head, "its first line changed")
        for key in list(self.waiting):
            if key not in seen:
                del self.waiting[key]
        for key, tf in self.files.items():
            if key not in seen and not tf.deleted:
                try:
                    tf.deleted = os.fstat(tf.fd).st_nlink == 0
                except OSError:
                    continue
                if tf.deleted:
                    self.events.append(("file_deleted", {"log.file.path": tf.path}))
        self._open_waiting()

    def _open_waiting(self) -> None:
        for key, path in list(self.waiting.items()):
            if self._open(path, key):
                del self.waiting[key]

    def _open(self, path: str, key: tuple[int, int]) -> bool:
        """Open *path* if its identity is known and free; False to try again later."""
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            return True
        except OSError as exc:
            self.events.append(("file_unreadable", {"log.file.path": path, "error.message": str(exc)}))
            return True
        try:
            st = os.fstat(fd)
            head = head_hash(fd) if (st.st_dev, st.st_ino) == key else None
        except OSError:
            head = None
        if head is None:
            os.close(fd)
            return False
        record = self.state.latest(head)
        if record is not None and record.uid in self.by_uid:  # a copy of a file still being read
            os.close(fd)
            return False
        if record is None:
            record = self.state.register(path, st.st_dev, st.st_ino, head, 0, st.st_size)
        elif st.st_size < record.offset:  # shorter than what was shipped: rewritten, a new generation
            self.events.append(("file_truncated", {"log.file.path": path, "log.offset": record.offset}))
            record = self.state.register(path, st.st_dev, st.st_ino, head, record.generation + 1, st.st_size)
        tf = TrackedFile(path=path, fd=fd, dev=st.st_dev, ino=st.st_ino, head_hash=head,
                         generation=record.generation, uid=record.uid, read_pos=record.offset,
                         line_start=record.offset, size=st.st_size, committed=record.offset,
                         emitted=record.offset)
        self.files[key] = tf
        self.by_uid[tf.uid] = tf
        self.events.append(("file_opened", {"log.file.path": path, "log.offset": record.offset}))
        return True

    def _new_generation(self, tf: TrackedFile, head: str, reason: str) -> TrackedFile:
        """*tf* was truncated or rewritten: a new generation, read from 0, takes its place.

        The old object keeps its id, so documents already read are acknowledged against
        the generation they came from."""
        self.events.append(("file_truncated", {"log.file.path": tf.path, "log.offset": tf.read_pos,
                                               "reason": reason}))
        record = self.state.latest(head)
        generation = record.generation + 1 if record is not None else 0
        row = self.state.register(tf.path, tf.dev, tf.ino, head, generation, tf.size)
        new = TrackedFile(path=tf.path, fd=tf.fd, dev=tf.dev, ino=tf.ino, head_hash=head,
                          generation=row.generation, uid=row.uid, read_pos=0, line_start=0, size=tf.size)
        tf.superseded = True
        tf.at_eof = True
        tf.pending, tf.long_line = b"", None
        self.files[(tf.dev, tf.ino)] = new
        if self.by_uid.get(tf.uid) is tf:
            del self.by_uid[tf.uid]
        self.by_uid[new.uid] = new
        return new

    def _let_go_emptied(self, tf: TrackedFile, reason: str) -> None:
        """*tf* was truncated and has no complete first line yet: release its identity (a
        copytruncate copy may continue it) and open the path anew once it has one."""
        self.events.append(("file_truncated", {"log.file.path": tf.path, "log.offset": tf.read_pos,
                                               "reason": reason}))
        tf.superseded = True
        self._release(tf)
        self.waiting[(tf.dev, tf.ino)] = tf.path

    # --- reading -------------------------------------------------------------------------------
    def poll(self, max_bytes: int = 4 * CHUNK_BYTES) -> list[Chunk | LongLine]:
        """Read what the open files have gained, about *max_bytes* at most in all."""
        if self.waiting:
            self._open_waiting()
        out: list[Chunk | LongLine] = []
        budget = max_bytes
        files = list(self.files.values())
        if files:  # start one file further each time, so a busy file cannot starve the others
            self._turn = (self._turn + 1) % len(files)
            files = files[self._turn :] + files[: self._turn]
        for tf in files:
            if budget <= 0:
                break
            budget -= self._read(tf, min(budget, CHUNK_BYTES), out)
        return out

    def _read(self, tf: TrackedFile, limit: int, out: list[Chunk | LongLine]) -> int:
        try:
            st = os.fstat(tf.fd)
            tf.size = st.st_size
            if st.st_size < tf.read_pos:  # copytruncate: the size dropped below what was read
                head = head_hash(tf.fd)
                if head is None:  # nothing complete yet: identify the new content later
                    self._let_go_emptied(tf, "its size dropped")
                    return 0
                tf = self._new_generation(tf, head, "its size dropped")
            tf.deleted = tf.deleted or st.st_nlink == 0
            data = os.pread(tf.fd, limit, tf.read_pos) if st.st_size > tf.read_pos else b""
        except OSError as exc:
            self.events.append(("file_read_failed", {"log.file.path": tf.path, "error.message": str(exc)}))
            return 0
        if not data:
            tf.at_eof = True
            return 0
        tf.at_eof = False
        tf.last_growth = time.monotonic()
        tf.read_pos += len(data)
        self._split(tf, data, out)
        return len(data)

    def _split(self, tf: TrackedFile, data: bytes, out: list[Chunk | LongLine]) -> None:
        if tf.long_line is not None:  # skipping the rest of an over-long line
            start, head, length = tf.long_line
            nl = data.find(b"\n")
            if nl < 0:
                tf.long_line = (start, head, length + len(data))
                return
            tf.long_line = None
            out.append(LongLine(tf, start, head, length + nl))
            tf.line_start = tf.emitted = start + length + nl + 1
            data = data[nl + 1 :]
        buf = tf.pending + data if tf.pending else data
        last = buf.rfind(b"\n")
        if last < 0:
            tf.pending = buf
        else:
            out.append(Chunk(tf, tf.line_start, buf if last + 1 == len(buf) else buf[: last + 1]))
            tf.line_start += last + 1
            tf.emitted = tf.line_start
            tf.pending = buf[last + 1 :]
        if len(tf.pending) > self.max_line_bytes:
            tf.long_line = (tf.line_start, tf.pending[: self.max_line_bytes], len(tf.pending))
            tf.pending = b""

    # --- finishing ---------------------------------------------------------------------------------
    def all_at_eof(self) -> bool:
        return not self.waiting and all(tf.at_eof for tf in self.files.values())

    def retire(self) -> None:
        """Close finished files: deleted or renamed away, read to the end, all committed.
        A deleted one is forgotten by the state store as well."""
        now = time.monotonic()
        for tf in list(self.files.values()):
            idle = now - tf.last_growth > self.close_inactive
            if not (tf.at_eof and tf.committed >= tf.emitted):
                continue
            if tf.deleted and (tf.partial_bytes == 0 or idle):
                # Deleted and read to the end; a last line that never got its newline is given
                # up after close_inactive, to free the disk space.
                self._release(tf)
                self.state.forget(tf.uid)
                fields: dict[str, Any] = {"log.file.path": tf.path}
                if tf.partial_bytes:
                    fields["unfinished_line_bytes"] = tf.partial_bytes
                self.events.append(("file_forgotten", fields))
            elif tf.partial_bytes == 0 and idle and not self._still_at_path(tf):
                self._release(tf)
                self.events.append(("file_closed", {"log.file.path": tf.path, "reason": "renamed away and idle"}))

    def _still_at_path(self, tf: TrackedFile) -> bool:
        try:
            st = os.stat(tf.path)
        except OSError:
            return False
        return (st.st_dev, st.st_ino) == (tf.dev, tf.ino)

    def _release(self, tf: TrackedFile) -> None:
        if self.files.get((tf.dev, tf.ino)) is tf:
            del self.files[(tf.dev, tf.ino)]
        if self.by_uid.get(tf.uid) is tf:
            del self.by_uid[tf.uid]
        try:
            os.close(tf.fd)
        except OSError:
            pass

    def close(self) -> None:
        for tf in list(self.files.values()):
            self._release(tf)
