"""Which file is this?  Pure decisions from what a file shows and what is known of it.

A file is known by a hash of its first line (its *head*, at most :data:`HEAD_BYTES`), as
Filebeat's fingerprint mode knows files: a renamed or moved file keeps its offset, a reused
inode does not inherit another file's offset, and the copy that copytruncate leaves
continues where the original stopped.  A file with no complete first line yet has no head.

Nothing here reads a file or holds state: the reader gathers the facts (the head, the stat,
a byte or two at known positions) and these functions say what they mean, so that every case
of the README's delivery guarantees is a row of a table test (``tests/test_identity.py``).

* :func:`decide`: a file being opened is new, the same file resumed, a copy of a known one
  (which continues it, or has nothing left to ship), a rewritten file (a new generation from
  byte 0), or a copy of a file another reader holds now (it waits: *held*).
* :func:`changed`: a file being read still holds what was read from it, or why not (then it
  was truncated or rewritten, and its identity is let go).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from enum import StrEnum
from typing import Final

__all__ = [
    "HEAD_BYTES",
    "Decision",
    "How",
    "Known",
    "changed",
    "compression",
    "decide",
    "file_uid",
    "head_hash",
]

#: The most of a file's first line its identity is taken from.
HEAD_BYTES: Final = 1024

_COMPRESSED: Final = (
    (b"\x1f\x8b", "gzip"),
    (b"BZh", "bzip2"),
    (b"\xfd7zXZ\x00", "xz"),
    (b"\x28\xb5\x2f\xfd", "zstd"),
    (b"PK\x03\x04", "zip"),
)


def head_hash(first: bytes) -> str | None:
    """The identity of a file whose first bytes are *first* (at least :data:`HEAD_BYTES` of
    them, when it has that many): a hash of its first line, or of its first HEAD_BYTES when
    the line is longer; None while the first line is not complete."""
    first = first[:HEAD_BYTES]
    nl = first.find(b"\n")
    if nl >= 0:
        first = first[: nl + 1]
    elif len(first) < HEAD_BYTES:
        return None
    return hashlib.blake2b(first, digest_size=8).hexdigest()


def compression(first: bytes) -> str | None:
    """The compression a file's first bytes show (gzip, bzip2, xz, zstd, zip), or None."""
    return next((name for magic, name in _COMPRESSED if first.startswith(magic)), None)


def file_uid(head: str, generation: int) -> str:
    """The stable id of one file generation, the first part of its documents' ``_id``."""
    return hashlib.blake2b(f"{head}:{generation}".encode(), digest_size=8).hexdigest()


@dataclass(frozen=True, slots=True)
class Known:
    """What the owner of offsets knows of a head: its newest generation, where reading it
    should resume (committed, or further when more was handed out in this run), and the
    file (device, inode) it was last read from."""

    uid: str
    generation: int
    offset: int
    dev: int
    ino: int


class How(StrEnum):
    """What a file being opened is (the ``how`` of its ``file_opened`` record)."""

    NEW = "new"  # a head never seen: read from byte 0
    RESUMED = "resumed"  # the same file (device and inode): from where it was
    COPY = "copy"  # another file with a known head (a rename across devices, copytruncate's copy)
    COPY_SHIPPED = "copy_already_shipped"  # a copy made before the original grew further
    REWRITTEN = "new_generation"  # the same file, no longer holding what was read: from byte 0
    HELD = "same_first_line"  # another file with this head is being read now: wait for it


@dataclass(frozen=True, slots=True)
class Decision:
    """How to read a file: from *position*, as generation *generation* (*uid*) of its head."""

    how: How
    uid: str
    generation: int
    position: int
    reason: str = ""  # REWRITTEN: why the saved position no longer fits


def decide(
    head: str, dev: int, ino: int, size: int, known: Known | None, *, held: bool, byte_before: bytes
) -> Decision:
    """What a file with *head*, on (*dev*, *ino*), *size* bytes long, is, given what is *known*
    of its head, whether a reader holds that head now (*held*), and *byte_before*: the byte
    just before the known position (empty when there is none to read)."""
    if known is None:
        return Decision(How.NEW, file_uid(head, 0), 0, 0)
    if held:
        return Decision(How.HELD, known.uid, known.generation, known.offset)
    position = known.offset
    same_file = (known.dev, known.ino) == (dev, ino)
    if size < position:
        if not same_file:
            return Decision(How.COPY_SHIPPED, known.uid, known.generation, position)
        why = "shorter than what was shipped"
    elif position > 0 and byte_before != b"\n":
        why = "the byte before the saved position is not a line end"
    else:
        return Decision(How.RESUMED if same_file else How.COPY, known.uid, known.generation, position)
    generation = known.generation + 1
    return Decision(How.REWRITTEN, file_uid(head, generation), generation, 0, why)


def changed(
    size: int,
    read_pos: int,
    head_now: str | None,
    head: str,
    line_start: int,
    byte_before_line: bytes,
    pending_intact: bool,
) -> str | None:
    """Why a file being read no longer holds what was read from it, or None when it does.

    *size* is its size now, *read_pos* the next byte to read, *head_now* its head now,
    *head* the head it was opened with, *line_start* where the line being read starts,
    *byte_before_line* the byte just before it (empty at 0), *pending_intact* whether the
    part of a line read but not handed out is still there."""
    if size < read_pos:
        return "its size dropped below what was read"
    if head_now != head:  # checked at any position: the identity was taken from this line
        return "it was emptied" if head_now is None else "its first line changed"
    if line_start > 0 and byte_before_line != b"\n":
        return "the byte before the read position is no longer a line end"
    if not pending_intact:
        return "the line being read was overwritten"
    return None
