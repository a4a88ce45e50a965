"""What the reading side hands the shipper's loop: lines, and what happened to files, as values.

The reader (:mod:`.discover` and :mod:`.reader`) never calls the owner of offsets: every
call returns a list of these, in the order things happened, and the loop feeds them on:

* lines (:class:`Chunk`, :class:`LongLine`, :class:`Framed`, :class:`Unwrapped`) to the batcher, and how far
  each reaches (:attr:`Chunk.end`) to :class:`~.offsets.Offsets` (handed out, not yet sent);
* file events (:class:`Opened`, :class:`Renamed`, :class:`Released`, :class:`Gone`) to
  :meth:`~.offsets.Offsets.apply`, which alone decides what they mean for the state;
* :class:`Notice` values to the shipper's own log.

Nothing handed out is changed afterwards.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

from .formats import Record, Run
from .identity import Decision

__all__ = [
    "Chunk",
    "FileEvent",
    "Framed",
    "Gone",
    "Item",
    "Line",
    "LongLine",
    "Notice",
    "Opened",
    "Released",
    "Renamed",
    "Source",
    "Unwrapped",
]


@dataclass(frozen=True, slots=True)
class Source:
    """One file generation as the rest of the pipeline sees it: immutable."""

    uid: str
    path: str
    action_prefix: bytes  # the start of its documents' bulk action: {"create":{"_id":"<uid>-
    fields: tuple[tuple[str, str], ...] = ()  # added to every document: a container's metadata
    meta: bytes = b""  # the same as JSON members, each followed by a comma
    framed: bool = False  # a container log: each document also gets the runtime's stream

    @classmethod
    def make(cls, uid: str, path: str, fields: dict[str, str] | None = None, *, framed: bool = False) -> Source:
        pairs = tuple(sorted((fields or {}).items()))
        meta = b"".join(orjson.dumps(k) + b":" + orjson.dumps(v) + b"," for k, v in pairs)
        return cls(uid, path, b'{"create":{"_id":"' + uid.encode() + b"-", pairs, meta, framed)


# --- lines ------------------------------------------------------------------------------------


@dataclass(slots=True)
class Chunk:
    """Complete lines of one file: *data* ends with ``\\n`` and starts at byte *offset*."""

    source: Source
    offset: int
    data: bytes

    @property
    def end(self) -> int:
        """The offset just past the last line."""
        return self.offset + len(self.data)


@dataclass(slots=True)
class LongLine:
    """A line longer than the limit: its first bytes, where it starts, and its whole length."""

    source: Source
    offset: int
    head: bytes
    length: int  # bytes of the line, newline excluded

    @property
    def end(self) -> int:
        return self.offset + self.length + 1


@dataclass(slots=True)
class Framed:
    """A container log's lines (:data:`.formats.Record` each, in order of their first byte),
    joined from the runtime's parts.  Everything before *covered* is in records handed out
    (a line still being joined starts at or after it)."""

    source: Source
    records: list[Record]
    covered: int
    nbytes: int  # outer bytes these records were read from

    @property
    def end(self) -> int:
        return self.covered


@dataclass(slots=True)
class Unwrapped:
    """A container log's lines that were each one whole entry of the runtime, unwrapped in bulk
    (:class:`~.formats.Run`): the records a :class:`Framed` would hold, as columns.  Nothing
    before its end is still being joined."""

    source: Source
    run: Run
    nbytes: int  # outer bytes these lines were read from

    @property
    def end(self) -> int:
        return self.run.end

    @property
    def covered(self) -> int:
        return self.run.end

    @property
    def records(self) -> list[Record]:
        return self.run.records()


Line = Chunk | LongLine | Framed | Unwrapped


# --- what happened to files --------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Opened:
    """A file generation is being read: how it was recognised, and from where."""

    source: Source
    head: str
    dev: int
    ino: int
    size: int
    decision: Decision


@dataclass(frozen=True, slots=True)
class Renamed:
    """A file being read was renamed (rotated) or moved: its path and size now."""

    uid: str
    path: str
    size: int


@dataclass(frozen=True, slots=True)
class Released:
    """The reader let go of a file generation (closed, finished, truncated): another file with
    the same head may take the identity over; what was handed out still gets acknowledged."""

    uid: str


@dataclass(frozen=True, slots=True)
class Gone:
    """A deleted file was read to its end, everything handed out settled, and let go."""

    uid: str


FileEvent = Opened | Renamed | Released | Gone


@dataclass(frozen=True, slots=True)
class Notice:
    """A record for the shipper's own log: *level*, *event* and its fields."""

    level: str
    event: str
    fields: dict[str, Any]


Item = Line | FileEvent | Notice
