"""Discover the files, give each one state, open what can be read, read it, let it go.

Every regular file the patterns match (less the excludes) is tracked by (device, inode),
in exactly one :class:`Phase`:

* ``WAITING``: matched, not being read: new, empty, without a complete first line, unreadable,
  waiting for a descriptor, or a copy of a file another reader holds (descriptor held, so a
  rename or deletion cannot take it away);
* ``OPEN``: being read by its :class:`~.reader.FileReader`;
* ``CLOSED``: finished and closed after ``--close-inactive`` (opened again when it changes);
* ``SKIPPED``: compressed, or another container's log: never read;
* ``DONE``: ``--once``: read to its end and closed.

**Discovery never stops.**  :meth:`Discovery.scan` runs on its own clock, also while sending is
blocked: it picks up new and grown files, notices renames and deletions, checks that a
paused reader's file still holds what was read, and opens what it can.  At most *max_open*
descriptors are held: finished, idle files are closed (and opened again when they grow); the
rest wait their turn.

**It owns nothing of the offsets.**  What is known of a head (where to resume it) and whether
a file's lines are all acknowledged come from a read-only :class:`OffsetsView`, given once.
What happens comes back from each call as values (:mod:`.items`), in order: lines, file
events, notices.  The caller applies a call's items to the owner of offsets before the next
call; within one call, what it handed out and opened itself is taken into account here.
"""

from __future__ import annotations

import errno
import fnmatch
import glob
import os
import resource
import stat
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from enum import Enum
from typing import Any

from . import formats
from .formats import Framer
from .identity import HEAD_BYTES, Decision, How, Known, compression, decide, head_hash
from .items import Gone, Item, Line, Notice, Opened, Released, Renamed, Source
from .reader import CHUNK_BYTES, FileReader

__all__ = ["Discovery", "OffsetsView", "Phase", "Waiting", "default_max_open"]

FD_RESERVE = 64  # descriptors left for the database, sockets, the dead letter, Python itself


def default_max_open() -> int:
    """Descriptors the reader may hold: the process's soft limit less a reserve."""
    soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        soft = 65536
    return max(4, min(soft - FD_RESERVE, 16384))


@dataclass(frozen=True, slots=True)
class OffsetsView:
    """What the owner of offsets lets the reader know: read-only."""

    resume: Callable[[str], Known | None]  # head -> where its newest generation resumes
    settled: Callable[[str], bool]  # uid -> everything handed out acknowledged


class Phase(Enum):
    WAITING = "waiting"
    OPEN = "open"
    CLOSED = "closed"
    SKIPPED = "skipped"
    DONE = "done"


@dataclass(frozen=True, slots=True)
class Waiting:
    """A matched file not being read, and why (a value for reports)."""

    path: str
    reason: str  # "new", "empty", "no_first_line", "same_first_line", "unreadable", "no_descriptor"
    detail: str = ""  # the holder's path (same_first_line), the error (unreadable)


#: Reasons a waiting file can still be read in this run (``--once`` waits for them).
_BLOCKING = frozenset({"new", "no_descriptor", "same_first_line"})


@dataclass(eq=False, slots=True)
class _File:
    """One tracked file: its phase, and what that phase needs."""

    path: str
    phase: Phase = Phase.WAITING
    reason: str = "new"  # WAITING: why (see Waiting.reason); SKIPPED: "compressed" or "container"
    detail: str = ""
    holder: str = ""  # WAITING same_first_line: the uid another reader holds
    stamp: tuple[int, int, int] | None = None  # WAITING: (size, mtime, ctime) when it last could not be opened
    closed_as: tuple[str, int, int] | None = None  # CLOSED: (path, size, mtime_ns) when closed
    fd: int | None = None  # WAITING same_first_line: held
    reader: FileReader | None = None  # OPEN

    def waiting(self) -> Waiting:
        return Waiting(self.path, self.reason, self.detail)


def excluded(path: str, pattern: str) -> bool:
    """Whether *pattern* (``--exclude``) excludes *path* (absolute): a pattern without a ``/``
    matches the file's base name (``*.tmp``, wherever the file is); an absolute one the whole
    path; a relative one with a ``/`` the path's last components (``archive/*.log`` excludes
    ``/var/log/amebo/archive/x.log``).  Never resolved against the working directory."""
    if "/" not in pattern:
        return fnmatch.fnmatchcase(os.path.basename(path), pattern)
    if pattern.startswith("/"):
        return fnmatch.fnmatchcase(path, pattern)
    return fnmatch.fnmatchcase(path, "*/" + pattern.removeprefix("./"))


class Discovery:
    """Finds the files matching *patterns* (less *excludes*) and reads their new lines."""

    def __init__(
        self,
        patterns: Iterable[str],
        offsets: OffsetsView,
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
        self.excludes = [os.path.expanduser(p) for p in excludes]
        self.offsets = offsets
        self.max_line_bytes = max_line_bytes
        self.close_inactive = close_inactive
        self.max_open = max_open or default_max_open()
        self.once = once
        self.file_format = file_format  # json, docker, cri, or auto (per file, from its first line)
        self.containers = list(containers)  # container-name globs: other containers' logs are skipped
        self._files: dict[tuple[int, int], _File] = {}  # by (dev, inode)
        self._warned: set[tuple[Any, ...]] = set()
        self._turn = 0
        self._out: list[Item] = []
        # What this call handed out and opened, which the owner of offsets learns only when
        # the caller applies the call's items.
        self._handed_now: dict[str, int] = {}
        self._opened_now: dict[str, Known] = {}

    # --- the calls: each returns what happened ------------------------------------------------
    def _begin(self) -> list[Item]:
        out, self._out = self._out, []
        self._handed_now.clear()
        self._opened_now.clear()
        return out

    def _end(self) -> list[Item]:
        out, self._out = self._out, []
        return out

    def scan(self) -> list[Item]:
        """Pick up new and grown files; notice renames and deletions; open what can be."""
        self._begin()
        seen: set[tuple[int, int]] = set()
        files = self._files
        for path in self.matching_paths():
            try:
                st = os.stat(path)
            except OSError:
                continue
            if not stat.S_ISREG(st.st_mode):
                continue
            key = (st.st_dev, st.st_ino)
            seen.add(key)
            f = files.get(key)
            if f is None:
                files[key] = _File(path)
            elif f.phase is Phase.OPEN:
                if f.path != path:
                    self._notice("info", "file_renamed", **{"log.file.path": path, "previous_path": f.path})
                    self._rename(f, path)
            elif f.phase is Phase.CLOSED:
                if f.closed_as != (path, st.st_size, st.st_mtime_ns):
                    files[key] = _File(path)  # it changed since it was closed: open it again
            elif f.phase is Phase.WAITING:
                f.path = path
        for key in [k for k, f in files.items() if k not in seen and f.phase is not Phase.OPEN and f.fd is None]:
            del files[key]
        for key, f in list(files.items()):
            if f.reader is not None:
                self._watch(key, f, f.reader, key in seen)
        self._open_waiting()
        return self._end()

    def poll(self, max_bytes: int = 4 * CHUNK_BYTES) -> list[Item]:
        """Read what the open files have gained, about *max_bytes* at most in all."""
        self._begin()
        self._open_waiting()
        open_files = [f for f in self._files.values() if f.reader is not None]
        if open_files:  # start one file further each time, so a busy file cannot starve the others
            self._turn = (self._turn + 1) % len(open_files)
            open_files = open_files[self._turn :] + open_files[: self._turn]
        budget = max_bytes
        for f in open_files:
            if budget <= 0:
                break
            if f.reader is not None:  # (a file superseded earlier in this call is no longer open)
                budget -= self._read(f, f.reader, min(budget, CHUNK_BYTES))
        return self._end()

    def retire(self) -> list[Item]:
        """Close finished files: deleted ones are let go for good; idle ones are closed (and
        opened again when they grow); in --once, every finished one (a waiting copy may follow)."""
        self._begin()
        now = time.monotonic()
        for key, f in list(self._files.items()):
            r = f.reader
            if r is None or not self._finished(r):
                continue
            idle = now - r.last_growth > self.close_inactive
            if r.deleted:
                if r.partial_bytes == 0 or idle:
                    # Read to the end; a last line that never got its newline is given up after
                    # close_inactive, to free the disk space.
                    fields: dict[str, Any] = {"log.file.path": f.path}
                    if r.partial_bytes:
                        fields["unfinished_line_bytes"] = r.partial_bytes
                    self._release(f, Phase.DONE)
                    del self._files[key]  # gone for good: its inode may come back as another file
                    self._out.append(Gone(r.uid))
                    self._notice("info", "file_forgotten", **fields)
            elif self.once and (r.partial_bytes == 0 or self._blocked_by(f)):
                self._release(f, Phase.DONE)
            elif idle:
                self._close(f, "idle for --close-inactive")
        return self._end()

    # --- reports -----------------------------------------------------------------------------
    def matching_paths(self) -> list[str]:
        found: dict[str, None] = {}
        for pattern in self.patterns:
            for path in sorted(glob.glob(pattern, recursive=True)):
                if not any(excluded(path, ex) for ex in self.excludes):
                    found[path] = None
        return list(found)

    def open_files(self) -> list[FileReader]:
        """The readers of the open files (for the loop's snapshot: read, never changed)."""
        return [f.reader for f in self._files.values() if f.reader is not None]

    def waiting(self) -> list[Waiting]:
        return [f.waiting() for f in self._files.values() if f.phase is Phase.WAITING]

    def skipped(self) -> list[str]:
        """Compressed files that match (reported; other containers' logs are not)."""
        return [f.path for f in self._files.values() if f.phase is Phase.SKIPPED and f.reason == "compressed"]

    def phases(self) -> dict[str, Phase]:
        """Each tracked file's path and phase."""
        return {f.path: f.phase for f in self._files.values()}

    def tracking(self) -> bool:
        """Whether any file is open or waiting."""
        return any(f.phase in (Phase.OPEN, Phase.WAITING) for f in self._files.values())

    def blocking(self) -> list[Waiting]:
        """--once: matched files that could still be read in this run (the run waits for them)."""
        return [f.waiting() for f in self._files.values() if f.phase is Phase.WAITING and f.reason in _BLOCKING]

    def all_read(self) -> bool:
        """--once: every open file read to its end and nothing left that could be opened."""
        return all(r.at_eof for r in self.open_files()) and not self.blocking()

    def close(self) -> None:
        for f in self._files.values():
            if f.reader is not None:
                f.reader.close()
                f.reader = None
            if f.fd is not None:
                os.close(f.fd)
                f.fd = None

    # --- helpers ---------------------------------------------------------------------------------
    def _notice(self, level: str, event: str, **fields: Any) -> None:
        self._out.append(Notice(level, event, fields))

    def _warn_once(self, key: tuple[Any, ...], event: str, **fields: Any) -> None:
        if key not in self._warned:
            self._warned.add(key)
            self._notice("warning", event, **fields)

    def _known(self, head: str) -> Known | None:
        """What is known of *head*, with what this call opened and handed out itself."""
        known = self._opened_now.get(head) or self.offsets.resume(head)
        if known is not None:
            end = self._handed_now.get(known.uid)
            if end is not None and end > known.offset:
                known = replace(known, offset=end)
        return known

    def _settled(self, uid: str) -> bool:
        return uid not in self._handed_now and self.offsets.settled(uid)

    def _hand_out(self, lines: list[Line]) -> None:
        handed = self._handed_now
        for line in lines:
            uid, end = line.source.uid, line.end
            if end > handed.get(uid, -1):
                handed[uid] = end
        self._out += lines

    def _finished(self, r: FileReader) -> bool:
        """Read to the end and everything handed out acknowledged."""
        return r.at_eof and self._settled(r.uid) and r.finished()

    def _blocked_by(self, f: _File) -> bool:
        return any(
            w.phase is Phase.WAITING and w.reason == "same_first_line" and w.detail == f.path
            for w in self._files.values()
        )

    def _rename(self, f: _File, path: str) -> None:
        r = f.reader
        assert r is not None
        f.path = path
        fields = dict(r.source.fields)
        if r.framer is not None:  # a rotated container log: what its new path says, else its first
            fields = formats.container_fields(path) or fields
        r.source = Source.make(r.uid, path, fields, framed=r.framer is not None)
        self._out.append(Renamed(r.uid, path, r.size))

    def _watch(self, key: tuple[int, int], f: _File, r: FileReader, seen: bool) -> None:
        """At a scan: a deleted file, and (also while reading is paused) one rewritten under
        its reader, so the copy holding the rest can take its identity over."""
        try:
            st = os.fstat(r.fd)
        except OSError:
            return
        if not seen and not r.deleted and st.st_nlink == 0:
            r.deleted = True
            self._notice("info", "file_deleted", **{"log.file.path": f.path})
        if (st.st_size, st.st_mtime_ns) != r.verified:
            try:
                problem = r.changed(st.st_size)
            except OSError:
                return
            if problem is not None:
                self._supersede(key, f, problem)
            else:
                r.verified = (st.st_size, st.st_mtime_ns)

    def _read(self, f: _File, r: FileReader, limit: int) -> int:
        lines: list[Line] = []
        try:
            st = os.fstat(r.fd)
            r.deleted = r.deleted or st.st_nlink == 0
            r.size = st.st_size
            if (st.st_size, st.st_mtime_ns) != r.verified:
                problem = r.changed(st.st_size)
                if problem is not None:
                    self._supersede((st.st_dev, st.st_ino), f, problem)
                    return 0
                r.verified = (st.st_size, st.st_mtime_ns)
            n = r.read(limit, lines)
        except OSError as exc:
            self._warn_once(
                (r.uid, "read", getattr(exc, "errno", None)),
                "file_read_failed",
                **{"log.file.path": f.path, "error.message": str(exc)},
            )
            return 0
        self._hand_out(lines)
        return n

    def _supersede(self, key: tuple[int, int], f: _File, reason: str) -> None:
        """*f* was truncated or rewritten: let the identity go (a copy holding the rest
        continues it) and open the file again as what it now is."""
        line_start = f.reader.line_start if f.reader is not None else 0
        self._notice("info", "file_truncated", **{"log.file.path": f.path, "log.offset": line_start}, reason=reason)
        self._release(f, Phase.WAITING)
        self._files[key] = _File(f.path)
        self._open_waiting()

    def _release(self, f: _File, phase: Phase) -> None:
        r = f.reader
        f.phase, f.reader = phase, None
        if r is not None:
            r.close()
            self._out.append(Released(r.uid))

    def _close(self, f: _File, reason: str) -> None:
        r = f.reader
        assert r is not None
        try:
            st = os.fstat(r.fd)
            closed_as: tuple[str, int, int] | None = (f.path, st.st_size, st.st_mtime_ns)
        except OSError:
            closed_as = None
        self._release(f, Phase.CLOSED)
        f.closed_as = closed_as
        self._notice("debug", "file_closed", **{"log.file.path": f.path}, reason=reason)

    # --- opening -----------------------------------------------------------------------------------
    def _descriptors(self) -> int:
        return sum(1 for f in self._files.values() if f.reader is not None or f.fd is not None)

    def _held(self) -> set[str]:
        return {f.reader.uid for f in self._files.values() if f.reader is not None}

    def _open_waiting(self) -> None:
        held = self._held()
        for key, f in list(self._files.items()):
            if f.phase is not Phase.WAITING or self._files.get(key) is not f:
                continue
            if f.reason == "same_first_line" and f.holder in held:
                continue
            if f.stamp is not None:
                try:
                    st = os.stat(f.path)
                except OSError:
                    continue
                if f.stamp == (st.st_size, st.st_mtime_ns, st.st_ctime_ns):
                    continue  # still empty, unreadable...: nothing to try until it changes
            if f.fd is None and self._descriptors() >= self.max_open and not self._make_room():
                f.reason = "no_descriptor"
                self._warn_once(
                    ("max_open",),
                    "open_file_limit_reached",
                    max_open=self.max_open,
                    waiting_files=sum(1 for w in self._files.values() if w.phase is Phase.WAITING),
                    reason="more files match than descriptors may be held; the rest are read as "
                    "finished files are closed (raise `ulimit -n`, or --max-open-files)",
                )
                return
            if not self._open(key, f):
                held = self._held()

    def _make_room(self) -> bool:
        """Close the least recently grown finished file to free a descriptor."""
        finished = [f for f in self._files.values() if f.reader is not None and self._finished(f.reader)]
        if not finished:
            return False
        oldest = min(finished, key=lambda f: f.reader.last_growth if f.reader is not None else 0.0)
        self._close(oldest, "to free a descriptor for a waiting file")
        return True

    def _unreadable(self, key: tuple[int, int], f: _File, exc: OSError) -> None:
        f.reason, f.detail = "unreadable", exc.strerror or str(exc)
        try:
            st = os.stat(f.path)
            f.stamp = (st.st_size, st.st_mtime_ns, st.st_ctime_ns)
        except OSError:
            f.stamp = None
        self._warn_once(
            (key, "unreadable", exc.errno),
            "file_unreadable",
            **{"log.file.path": f.path, "error.message": f.detail},
            reason="this file matches but cannot be read: fix its permissions",
        )

    def _open(self, key: tuple[int, int], f: _File) -> bool:
        """Open *f* if it can be read now (True: it left WAITING, or is gone)."""
        path = f.path
        try:
            fd = f.fd if f.fd is not None else os.open(path, os.O_RDONLY | os.O_CLOEXEC)
            f.fd = None
        except FileNotFoundError:
            del self._files[key]
            return True
        except OSError as exc:
            if exc.errno in (errno.EMFILE, errno.ENFILE):
                self.max_open = max(1, sum(1 for w in self._files.values() if w.reader is not None))
                f.reason = "no_descriptor"
            else:
                self._unreadable(key, f, exc)
            return False
        try:
            st = os.fstat(fd)
            if (st.st_dev, st.st_ino) != key:  # replaced between the scan and now
                os.close(fd)
                del self._files[key]
                return True
            first = os.pread(fd, HEAD_BYTES, 0)
        except OSError as exc:
            os.close(fd)
            f.reason, f.detail = "unreadable", exc.strerror or str(exc)
            return False
        head = head_hash(first)
        if head is None:
            os.close(fd)
            f.reason = "empty" if st.st_size == 0 else "no_first_line"
            f.stamp = (st.st_size, st.st_mtime_ns, st.st_ctime_ns)
            return False
        kind = compression(first)
        if kind is not None:
            os.close(fd)
            f.phase, f.reason = Phase.SKIPPED, "compressed"
            self._notice(
                "info",
                "file_skipped",
                **{"log.file.path": path},
                reason=f"{kind}-compressed: rotated logs are read before they are compressed "
                "(use logrotate's delaycompress), or exclude them with --exclude",
            )
            return True
        known = self._known(head)
        held = known is not None and known.uid in self._held()
        before = b""
        if known is not None and not held and 0 < known.offset <= st.st_size:
            try:
                before = os.pread(fd, 1, known.offset - 1)
            except OSError:
                before = b""
        decision = decide(head, key[0], key[1], st.st_size, known, held=held, byte_before=before)
        if decision.how is How.HELD:
            # Held open: it is usually the copy copytruncate made, which a later rotation may
            # rename or compress away before the identity is free.
            f.fd = fd
            holder = next((h.path for h in self._files.values() if h.reader and h.reader.uid == decision.uid), "?")
            f.reason, f.detail, f.holder = "same_first_line", holder, decision.uid
            return False
        framer, fields, file_format = self._framing(fd, path)
        if self.containers and framer is not None:
            name = fields.get("container.name") or fields.get("kubernetes.container.name") or ""
            if not any(fnmatch.fnmatchcase(name, glob_) for glob_ in self.containers):
                os.close(fd)
                f.phase, f.reason = Phase.SKIPPED, "container"
                self._notice(
                    "debug",
                    "file_skipped",
                    **{"log.file.path": path, "container.name": name},
                    reason="the container's name matches no --container",
                )
                return True
        self._start_reading(f, fd, st, head, decision, framer, fields, file_format)
        return True

    def _start_reading(
        self,
        f: _File,
        fd: int,
        st: os.stat_result,
        head: str,
        decision: Decision,
        framer: Framer | None,
        fields: dict[str, str],
        file_format: str,
    ) -> None:
        path = f.path
        if decision.how is How.REWRITTEN:
            self._notice(
                "info",
                "file_rewritten",
                **{"log.file.path": path, "log.offset": decision.position},
                reason=decision.reason,
            )
        source = Source.make(decision.uid, path, fields, framed=framer is not None)
        position = decision.position
        f.phase, f.reason, f.stamp = Phase.OPEN, "", None
        f.reader = FileReader(fd, source, head, position, st.st_size, framer, self.max_line_bytes)
        self._opened_now[head] = Known(decision.uid, decision.generation, position, st.st_dev, st.st_ino)
        self._out.append(Opened(source, head, st.st_dev, st.st_ino, st.st_size, decision))
        self._notice(
            "info",
            "file_opened",
            **{"log.file.path": path, "log.offset": position},
            how=str(decision.how),
            format=file_format,
        )

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
        if name == "docker" and formats.c_unwrap is None:
            self._warn_once(
                ("no_c_unwrap",),
                "docker_logs_read_slowly",
                **{"log.file.path": path},
                reason="this install of amebo-logging has no C unwrapper (amebo_logging/ship/_unwrap.c was not "
                "built: there was no C compiler when it was installed), so Docker's json-file logs are read in "
                "pure Python at about half the speed; nothing is lost.  Fix: install a C compiler and Python's "
                "headers (Debian: apt-get install gcc python3-dev), then reinstall amebo-logging past pip's cache "
                "of the wheel built without it (pip install --force-reinstall --no-cache-dir --no-deps <what you "
                "installed>)",
            )
        return framer, (formats.container_fields(path) if framer is not None else {}), name
