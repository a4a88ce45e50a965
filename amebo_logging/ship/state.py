"""Crash-safe shipping offsets in SQLite (WAL), locked per state directory.

One row per *file generation*: a file is known by the hash of its first line (its *head*,
as Filebeat's fingerprint identity), so a renamed, moved or copied file keeps its offset; a
truncation or rewrite starts a new generation.  The row's ``offset`` is the byte just past
the last line Elasticsearch acknowledged (or that was dead-lettered), with every line before
it acknowledged too.  Only :mod:`.offsets` writes here.

The state directory holds ``state.sqlite3``, a ``state.id`` marker and a ``lock`` file.

* **One shipper per directory.**  The lock file is held with ``flock`` for the life of the
  store; a second shipper on the same directory fails at once, naming the PID that holds it.
* **Nothing is reset silently.**  A directory with the marker but no database, or a
  database SQLite calls corrupt, is a :class:`StateError` saying what to do.
* **Write failures are named.**  A full disk is "disk full under <dir>", not a corruption;
  a database created half-way (the disk filled during creation) is completed once space is
  back.
"""

from __future__ import annotations

import errno
import fcntl
import os
import sqlite3
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from .identity import file_uid

__all__ = ["FileRecord", "StateError", "StateStore", "lock_holder", "reset_state"]

SCHEMA_VERSION: Final = 2  # 2 added the totals table; a version 1 database is upgraded when opened
DB_NAME: Final = "state.sqlite3"
MARKER: Final = "state.id"
LOCK: Final = "lock"

_CORRUPT: Final = frozenset({"SQLITE_CORRUPT", "SQLITE_NOTADB"})
_FULL: Final = frozenset({"SQLITE_FULL"})


class StateError(Exception):
    """The state directory or database cannot be used; the message says what to do."""

    def __init__(self, message: str, kind: str = "unusable") -> None:
        super().__init__(message)
        self.kind = kind  # "unusable", "locked", "corrupt", "missing", "full", "io"


@dataclass(frozen=True)
class FileRecord:
    uid: str
    path: str
    dev: int
    ino: int
    head_hash: str
    generation: int
    offset: int
    size: int
    updated: float
    delivered_at: float | None


def _reset_hint(state_dir: Path) -> str:
    return f"amebo-logship reset-state --state-dir {_quote(str(state_dir))}"


def _quote(text: str) -> str:
    import shlex

    return shlex.quote(text)


def describe_sqlite_error(exc: BaseException, state_dir: Path, db_path: Path) -> StateError:
    """A :class:`StateError` naming the real cause of a SQLite (or OS) failure."""
    name = getattr(exc, "sqlite_errorname", "") or ""
    err = getattr(exc, "errno", None)
    if name in _FULL or err == errno.ENOSPC or "database or disk is full" in str(exc):
        return StateError(
            f"disk full under {state_dir}: the offsets could not be saved; free space there "
            "and run again (nothing is lost: unsaved offsets are shipped again and absorbed "
            "as duplicates)",
            "full",
        )
    if name in _CORRUPT:
        return StateError(
            f"the offsets database {db_path} is corrupt ({exc}): restore it from a backup, or run "
            f"`{_reset_hint(state_dir)}` to ship every file again from the start",
            "corrupt",
        )
    if name.startswith(("SQLITE_IOERR", "SQLITE_READONLY", "SQLITE_CANTOPEN", "SQLITE_PERM")) or err is not None:
        return StateError(
            f"cannot write the offsets database {db_path}: {exc}: check the disk and the permissions of {state_dir}",
            "io",
        )
    return StateError(f"the offsets database {db_path} cannot be used: {exc}", "unusable")


class StateStore:
    """The offsets database.  Used by one thread (the offsets owner); every write is one
    transaction.

    *lock* takes the directory's lock (``ship`` and ``reset-state`` do; ``status`` does not).
    """

    def __init__(self, state_dir: str | os.PathLike[str], *, create: bool = True, lock: bool = True) -> None:
        self.dir = Path(state_dir)
        self.path = self.dir / DB_NAME
        self._lock_fd: int | None = None
        self._prepare_dir(create)
        if lock:
            self._lock_fd = acquire_lock(self.dir)
        try:
            self._conn = self._open(create)
        except BaseException:
            self._release_lock()
            raise

    @classmethod
    def in_memory_copy(cls, state_dir: str | os.PathLike[str]) -> StateStore:
        """A store in memory, starting from the offsets in *state_dir* when it has any: what
        ``ship --dry-run`` reads from and writes to, so the real database is never changed."""
        self = cls.__new__(cls)
        self.dir = Path(state_dir)
        self.path = self.dir / DB_NAME
        self._lock_fd = None
        conn = sqlite3.connect(":memory:", check_same_thread=False, isolation_level=None)
        if self.path.exists():
            try:
                source = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True)
                try:
                    source.backup(conn)
                finally:
                    source.close()
                self._check(conn)
            except (sqlite3.Error, OSError) as exc:
                conn.close()
                raise describe_sqlite_error(exc, self.dir, self.path) from None
        else:
            self._create_schema(conn)
        self._conn = conn
        return self

    # --- opening -------------------------------------------------------------------------
    def _prepare_dir(self, create: bool) -> None:
        try:
            if not self.dir.exists():
                if not create:
                    raise StateError(
                        f"state directory {self.dir} does not exist: nothing has been shipped from here "
                        "(or give the --state-dir the shipper uses)",
                        "missing",
                    )
                self.dir.mkdir(parents=True, mode=0o700)
            if not self.dir.is_dir():
                raise StateError(f"--state-dir {self.dir} is not a directory: give a directory")
            needed = os.R_OK | os.X_OK | (os.W_OK if create else 0)
            if not os.access(self.dir, needed):
                raise StateError(
                    f"state directory {self.dir} is not {'readable and writable' if create else 'readable'} "
                    "by this user: fix its permissions (chown/chmod) or choose another with --state-dir"
                )
        except OSError as exc:
            raise StateError(f"cannot use state directory {self.dir}: {exc.strerror or exc}") from None

    def _open(self, create: bool) -> sqlite3.Connection:
        marker = self.dir / MARKER
        exists = self.path.exists()
        if not exists and marker.exists():
            raise StateError(
                f"the offsets database {self.path} is missing, but {marker} shows this directory held one: "
                f"restore it from a backup, or run `{_reset_hint(self.dir)}` to ship every file again from the "
                "start (documents already in Elasticsearch are skipped as duplicates)",
                "missing",
            )
        if not exists and not create:
            raise StateError(f"no offsets database in {self.dir}: nothing has been shipped from here", "missing")
        try:
            conn = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None, timeout=30)
        except sqlite3.Error as exc:
            raise describe_sqlite_error(exc, self.dir, self.path) from None
        try:
            if create:
                conn.execute("PRAGMA journal_mode=WAL")
                conn.execute("PRAGMA synchronous=NORMAL")
                # Keep the write-ahead log small (SQLite's default lets it reach ~4 MB): the
                # state directory may sit on a small or nearly full disk.
                conn.execute("PRAGMA wal_autocheckpoint=64")
                conn.execute("PRAGMA journal_size_limit=262144")
            has_schema = conn.execute(
                "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name IN ('meta', 'files')"
            ).fetchone()[0]
            if has_schema < 2 and not marker.exists():
                # New, or created half-way (the disk filled before the marker was written).
                if not create:
                    raise StateError(
                        f"no offsets database in {self.dir}: nothing has been shipped from here", "missing"
                    )
                conn.executescript("DROP TABLE IF EXISTS meta; DROP TABLE IF EXISTS files;")
                self._create_schema(conn)
            self._check(conn)
            if create and not marker.exists():
                tmp = marker.with_suffix(".tmp")
                tmp.write_text(uuid.uuid4().hex + "\n")
                os.replace(tmp, marker)
        except StateError:
            conn.close()
            raise
        except (sqlite3.Error, OSError) as exc:
            conn.close()
            raise describe_sqlite_error(exc, self.dir, self.path) from None
        return conn

    @staticmethod
    def _create_schema(conn: sqlite3.Connection) -> None:
        conn.executescript(
            f"""
            BEGIN;
            CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
            CREATE TABLE files (
                uid TEXT PRIMARY KEY,
                path TEXT NOT NULL,
                dev INTEGER NOT NULL,
                ino INTEGER NOT NULL,
                head_hash TEXT NOT NULL,
                generation INTEGER NOT NULL,
                offset INTEGER NOT NULL,
                size INTEGER NOT NULL,
                updated REAL NOT NULL,
                delivered_at REAL
            );
            CREATE INDEX files_head ON files (head_hash, generation);
            CREATE TABLE totals (name TEXT PRIMARY KEY, value INTEGER NOT NULL, last_at REAL NOT NULL);
            INSERT INTO meta VALUES ('schema_version', '{SCHEMA_VERSION}');
            COMMIT;
            """
        )

    @staticmethod
    def _upgrade(conn: sqlite3.Connection) -> None:
        """Version 1 to 2: the totals table."""
        conn.executescript(
            """
            BEGIN;
            CREATE TABLE IF NOT EXISTS totals (name TEXT PRIMARY KEY, value INTEGER NOT NULL, last_at REAL NOT NULL);
            UPDATE meta SET value = '2' WHERE key = 'schema_version';
            COMMIT;
            """
        )

    @staticmethod
    def _check(conn: sqlite3.Connection) -> None:
        result = conn.execute("PRAGMA quick_check").fetchone()
        if result is None or result[0] != "ok":
            err = sqlite3.DatabaseError(f"integrity check failed: {result[0] if result else 'no answer'}")
            err.sqlite_errorname = "SQLITE_CORRUPT"
            raise err
        row = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
        if row is not None and int(row[0]) == 1 and not conn.in_transaction:
            try:
                StateStore._upgrade(conn)
                row = ("2",)
            except sqlite3.OperationalError:  # read-only (status on a copy): totals stay empty
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                return
        if row is None or int(row[0]) != SCHEMA_VERSION:
            err = sqlite3.DatabaseError(f"unknown schema version {row[0] if row else None}")
            err.sqlite_errorname = "SQLITE_CORRUPT"
            raise err

    # --- reading ---------------------------------------------------------------------------
    def latest(self, head_hash: str) -> FileRecord | None:
        """The newest generation recorded for the file with this head, if any."""
        row = self._conn.execute(
            "SELECT * FROM files WHERE head_hash = ? ORDER BY generation DESC LIMIT 1", (head_hash,)
        ).fetchone()
        return FileRecord(*row) if row else None

    def get(self, uid: str) -> FileRecord | None:
        row = self._conn.execute("SELECT * FROM files WHERE uid = ?", (uid,)).fetchone()
        return FileRecord(*row) if row else None

    def all(self) -> list[FileRecord]:
        rows = self._conn.execute("SELECT * FROM files ORDER BY path, generation").fetchall()
        return [FileRecord(*r) for r in rows]

    def live(self) -> dict[str, str]:
        """What the last shipper on this state showed at its last commit (``live.*`` meta)."""
        rows = self._conn.execute("SELECT key, value FROM meta WHERE key LIKE 'live.%'").fetchall()
        return {key.removeprefix("live."): value for key, value in rows}

    def totals(self) -> dict[str, tuple[int, float]]:
        """Documents settled each way since the state was created: name -> (count, last time)."""
        try:
            rows = self._conn.execute("SELECT name, value, last_at FROM totals").fetchall()
        except sqlite3.OperationalError:  # a version 1 database opened read-only
            return {}
        return {name: (value, last_at) for name, value, last_at in rows}

    # --- writing ---------------------------------------------------------------------------
    def _write(self, statements: list[tuple[str, Iterable[tuple[object, ...]]]]) -> None:
        """Run *statements* (sql, rows) in one transaction; a failure is a named StateError."""
        conn = self._conn
        try:
            conn.execute("BEGIN IMMEDIATE")
            for sql, rows in statements:
                conn.executemany(sql, rows)
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            if conn.in_transaction:
                try:
                    conn.execute("ROLLBACK")
                except sqlite3.Error:
                    pass
            raise describe_sqlite_error(exc, self.dir, self.path) from None

    def register(self, path: str, dev: int, ino: int, head_hash: str, generation: int, size: int) -> FileRecord:
        """Record a new file generation at offset 0 (a no-op if it is already known)."""
        uid = file_uid(head_hash, generation)
        self._write(
            [
                (
                    "INSERT OR IGNORE INTO files VALUES (?, ?, ?, ?, ?, ?, 0, ?, ?, NULL)",
                    [(uid, path, dev, ino, head_hash, generation, size, time.time())],
                )
            ]
        )
        found = self.get(uid)
        assert found is not None
        return found

    def commit(
        self,
        offsets: Iterable[tuple[str, int, str, int]],
        counts: dict[str, int] | None = None,
        live: dict[str, str] | None = None,
    ) -> None:
        """Advance offsets: (uid, offset, path, size) each, never back; add *counts* to the
        totals; keep *live* (what a running shipper shows ``status``: requests in flight, the
        concurrency limit).  One transaction."""
        now = time.time()
        rows = [(off, path, size, now, now, uid, off) for uid, off, path, size in offsets]
        totals = [(name, n, now) for name, n in (counts or {}).items() if n]
        statements: list[tuple[str, Iterable[tuple[object, ...]]]] = []
        if live and (rows or totals):
            statements.append(
                (
                    "INSERT INTO meta VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                    [(f"live.{k}", v) for k, v in {**live, "at": repr(now)}.items()],
                )
            )
        if rows:
            statements.append(
                (
                    (
                        "UPDATE files SET offset = ?, path = ?, size = ?, updated = ?, delivered_at = ? "
                        "WHERE uid = ? AND offset <= ?"
                    ),
                    rows,
                )
            )
        if totals:
            statements.append(
                (
                    (
                        "INSERT INTO totals VALUES (?, ?, ?) ON CONFLICT (name) "
                        "DO UPDATE SET value = value + excluded.value, last_at = excluded.last_at"
                    ),
                    totals,
                )
            )
        if statements:
            self._write(statements)

    def forget(self, uids: Iterable[str]) -> None:
        """Drop files that were deleted and fully shipped."""
        rows = [(uid,) for uid in uids]
        if rows:
            self._write([("DELETE FROM files WHERE uid = ?", rows)])

    def close(self) -> None:
        try:
            self._conn.close()
        finally:
            self._release_lock()

    def _release_lock(self) -> None:
        if self._lock_fd is not None:
            fd, self._lock_fd = self._lock_fd, None
            os.close(fd)  # closing the descriptor releases the flock


def acquire_lock(state_dir: Path) -> int:
    """Hold ``state_dir/lock`` (``flock``) for this process; StateError naming the holder
    when another process has it."""
    path = state_dir / LOCK
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    except OSError as exc:
        raise StateError(
            f"cannot create the lock file {path}: {exc.strerror}: fix the permissions of "
            f"{state_dir} or choose another --state-dir"
        ) from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        try:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
        except OSError:
            holder = "unknown"
        os.close(fd)
        raise StateError(
            f"another amebo-logship (PID {holder}) is using the state directory {state_dir}: stop "
            "it first, or give each shipper its own --state-dir",
            "locked",
        ) from None
    except OSError as exc:
        os.close(fd)
        raise StateError(f"cannot lock {path}: {exc.strerror}") from None
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    except OSError:
        pass  # the lock is what matters; the PID is a courtesy
    return fd


def lock_holder(state_dir: Path) -> int | None:
    """The PID of the shipper using *state_dir* now, or None.  Read from the lock file, and
    believed while that process lives: trying the lock itself could, for an instant, keep a
    shipper that starts then from getting it."""
    try:
        text = (state_dir / LOCK).read_text(errors="replace").strip()
    except OSError:
        return None
    if not text.isdigit():
        return None
    pid = int(text)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:  # alive, another user's
        return pid
    return pid


def reset_state(state_dir: str | os.PathLike[str]) -> bool:
    """Remove the offsets database and its marker (under the lock): every file will be shipped
    from the start.  False when there was nothing to reset."""
    d = Path(state_dir)
    if not d.is_dir():
        return False
    fd = acquire_lock(d)
    try:
        removed = False
        for name in (DB_NAME, DB_NAME + "-wal", DB_NAME + "-shm", MARKER):
            try:
                (d / name).unlink()
                removed = True
            except FileNotFoundError:
                pass
        return removed
    finally:
        os.close(fd)
