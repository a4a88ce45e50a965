"""Crash-safe shipping offsets in SQLite (WAL), advanced only past acknowledged lines.

One row per *file generation*: a file is known by the hash of its first line (its *head*,
as Filebeat's fingerprint identity), so a renamed, moved or copied file keeps its offset; a
truncation that keeps the first line starts a new generation of the same file.  The row's
``offset`` is the byte just past the last line Elasticsearch acknowledged (or that was
dead-lettered), with every line before it acknowledged too.

The state directory holds ``state.sqlite3`` and a ``state.id`` marker.  A directory with the
marker but no database, or a database SQLite cannot read, is reported as
:class:`StateError` and never silently reset.
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
import threading
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Final

__all__ = ["FileRecord", "StateError", "StateStore", "file_uid"]

SCHEMA_VERSION: Final = 1
DB_NAME: Final = "state.sqlite3"
MARKER: Final = "state.id"


class StateError(Exception):
    """The state directory or database cannot be used; the message says what to do."""


def file_uid(head_hash: str, generation: int) -> str:
    """The stable id of one file generation, the first part of its documents' ``_id``."""
    raw = f"{head_hash}:{generation}".encode()
    return hashlib.blake2b(raw, digest_size=8).hexdigest()


@dataclass
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


class StateStore:
    """The offsets database.  Thread-safe; every write is one transaction."""

    def __init__(self, state_dir: str | os.PathLike[str], *, create: bool = True) -> None:
        self.dir = Path(state_dir)
        self.path = self.dir / DB_NAME
        self._lock = threading.Lock()
        self._conn = self._open(create)

    # --- opening -------------------------------------------------------------------------
    def _open(self, create: bool) -> sqlite3.Connection:
        marker = self.dir / MARKER
        try:
            if not self.dir.exists():
                if not create:
                    raise StateError(f"state directory {self.dir} does not exist: nothing has been shipped from here")
                self.dir.mkdir(parents=True, mode=0o700)
            if not os.access(self.dir, os.R_OK | os.W_OK | os.X_OK):
                raise StateError(f"state directory {self.dir} is not readable and writable by this user: "
                                 "fix its permissions or choose another with --state-dir")
            fresh = not self.path.exists()
            if fresh and marker.exists():
                raise StateError(
                    f"the offsets database {self.path} is missing, but {marker} shows this directory held one: "
                    "restore it from a backup, or run `amebo-logship reset-state` to ship every file again "
                    "from the start (documents already in Elasticsearch are skipped as duplicates)"
                )
            if fresh and not create:
                raise StateError(f"no offsets database in {self.dir}: nothing has been shipped from here")
            conn = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None, timeout=30)
        except OSError as exc:
            raise StateError(f"cannot use state directory {self.dir}: {exc.strerror or exc}") from None
        except sqlite3.Error as exc:
            raise StateError(f"cannot open {self.path}: {exc}") from None
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            if fresh:
                self._create_schema(conn)
                marker.write_text(uuid.uuid4().hex + "\n")
            self._check(conn)
        except sqlite3.DatabaseError as exc:
            conn.close()
            raise StateError(
                f"the offsets database {self.path} is corrupt ({exc}): restore it from a backup, or run "
                "`amebo-logship reset-state` to ship every file again from the start"
            ) from None
        return conn

    @staticmethod
    def _create_schema(conn: sqlite3.Connection) -> None:
        conn.executescript(
            """
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
            COMMIT;
            """
        )
        conn.execute("INSERT INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))

    @staticmethod
    def _check(conn: sqlite3.Connection) -> None:
        result = conn.execute("PRAGMA quick_check").fetchone()
        if result is None or result[0] != "ok":
            raise sqlite3.DatabaseError(f"integrity check failed: {result[0] if result else 'no answer'}")
        row = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
        if row is None or int(row[0]) != SCHEMA_VERSION:
            raise sqlite3.DatabaseError(f"unknown schema version {row[0] if row else None}")

    # --- reading ---------------------------------------------------------------------------
    def latest(self, head_hash: str) -> FileRecord | None:
        """The newest generation recorded for the file with this head, if any."""
        with self._lock:
            row = self._conn.execute(
                "SELECT * FROM files WHERE head_hash = ? ORDER BY generation DESC LIMIT 1", (head_hash,)
            ).fetchone()
        return FileRecord(*row) if row else None

    def all(self) -> list[FileRecord]:
        with self._lock:
            rows = self._conn.execute("SELECT * FROM files ORDER BY path, generation").fetchall()
        return [FileRecord(*r) for r in rows]

    # --- writing ---------------------------------------------------------------------------
    def register(self, path: str, dev: int, ino: int, head_hash: str, generation: int, size: int) -> FileRecord:
        """Record a new file generation at offset 0 (a no-op if it is already known)."""
        uid = file_uid(head_hash, generation)
        now = time.time()
        with self._lock:
            self._conn.execute(
                "INSERT OR IGNORE INTO files VALUES (?, ?, ?, ?, ?, ?, 0, ?, ?, NULL)",
                (uid, path, dev, ino, head_hash, generation, size, now),
            )
            row = self._conn.execute("SELECT * FROM files WHERE uid = ?", (uid,)).fetchone()
        return FileRecord(*row)

    def commit(self, offsets: Iterable[tuple[str, int, str, int]]) -> None:
        """Advance offsets: (uid, offset, path, size) each; one transaction; never moves back."""
        now = time.time()
        rows = [(off, path, size, now, now, uid, off) for uid, off, path, size in offsets]
        if not rows:
            return
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                self._conn.executemany(
                    "UPDATE files SET offset = ?, path = ?, size = ?, updated = ?, delivered_at = ? "
                    "WHERE uid = ? AND offset <= ?",
                    rows,
                )
                self._conn.execute("COMMIT")
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise

    def touch(self, uid: str, path: str, size: int) -> None:
        """Note the current path and size of a file (for ``status``)."""
        with self._lock:
            self._conn.execute("UPDATE files SET path = ?, size = ? WHERE uid = ?", (path, size, uid))

    def forget(self, uid: str) -> None:
        """Drop a file that was deleted and fully shipped."""
        with self._lock:
            self._conn.execute("DELETE FROM files WHERE uid = ?", (uid,))

    def close(self) -> None:
        with self._lock:
            self._conn.close()


def reset_state(state_dir: str | os.PathLike[str]) -> None:
    """Remove the offsets database and its marker: every file will be shipped from the start."""
    d = Path(state_dir)
    for name in (DB_NAME, DB_NAME + "-wal", DB_NAME + "-shm", MARKER):
        try:
            (d / name).unlink()
        except FileNotFoundError:
            pass
