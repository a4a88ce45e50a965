"""THE owner of shipping offsets: resume, acknowledge (contiguous only), forget.

Modelled on Filebeat's registrar and Vector's end-to-end acknowledgements.  The reader tells
this module what it handed out (:meth:`Offsets.sent`: per file generation, the end of what a
batch carries); the sender's outcome comes back as a value (:class:`Ack`: per file
generation, the end of the settled prefix and whether all of it was settled); only here do
offsets advance, and only past a contiguous run of settled batches.  This module is the only
writer of the :class:`~.state.StateStore`, and it is used by one thread, the shipper's main
loop: nothing in it is shared.

A file generation is named by its *uid* (see :func:`.state.file_uid`).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from .state import FileRecord, StateStore

__all__ = ["Ack", "Known", "Offsets"]


@dataclass(frozen=True, slots=True)
class Ack:
    """The sender's outcome for one batch: per uid, (end of the settled prefix, all settled);
    and how many documents were settled each way (``delivered``, ``failure_store``, ...)."""

    seq: int
    ends: dict[str, tuple[int, bool]]
    counts: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Known:
    """What is known of a file identity (its head): where reading it should resume."""

    uid: str
    generation: int
    offset: int  # committed, or further when more was already handed out in this run
    dev: int
    ino: int
    reading: bool  # an open reader holds this identity now


@dataclass(slots=True)
class _Track:
    path: str
    size: int
    committed: int
    emitted: int
    reading: bool = True
    outstanding: deque[list[int]] = field(default_factory=deque)  # [seq, end, settled_end, done]


class Offsets:
    """Offsets of every file generation being read or awaiting acknowledgement."""

    def __init__(self, store: StateStore) -> None:
        self.store = store
        self._tracks: dict[str, _Track] = {}
        self.commits = 0

    # --- resuming ------------------------------------------------------------------------
    def known(self, head: str) -> Known | None:
        """The newest generation of the file with this *head*, and where to resume it."""
        record = self.store.latest(head)
        if record is None:
            return None
        track = self._tracks.get(record.uid)
        offset = record.offset if track is None else max(record.offset, track.emitted, track.committed)
        return Known(record.uid, record.generation, offset, record.dev, record.ino, track is not None and track.reading)

    def register(self, path: str, dev: int, ino: int, head: str, generation: int, size: int) -> FileRecord:
        """A new file generation, at offset 0."""
        return self.store.register(path, dev, ino, head, generation, size)

    def track(self, uid: str, path: str, size: int, offset: int) -> None:
        """A reader starts reading *uid* at *offset* (everything before it is settled)."""
        track = self._tracks.get(uid)
        if track is None:
            self._tracks[uid] = _Track(path, size, offset, offset)
        else:
            track.reading, track.path, track.size = True, path, size
            track.emitted = max(track.emitted, offset)

    def release(self, uid: str) -> None:
        """The reader of *uid* let go of it (closed, superseded): another file with the same
        head may take the identity over.  Unacknowledged lines stay tracked."""
        track = self._tracks.get(uid)
        if track is not None:
            track.reading = False
            if self._settled(track):
                del self._tracks[uid]

    def handed(self, uid: str, end: int) -> None:
        """The reader handed out the lines of *uid* up to *end* (they may not be sent yet)."""
        track = self._tracks[uid]
        if end > track.emitted:
            track.emitted = end

    def observe(self, uid: str, path: str, size: int) -> None:
        """The current path and size of *uid* (for ``status``)."""
        track = self._tracks.get(uid)
        if track is not None:
            track.path, track.size = path, size

    # --- the pipeline -----------------------------------------------------------------------
    def sent(self, seq: int, ends: dict[str, int]) -> None:
        """Batch *seq* carries lines of each uid up to its end (empty lines included)."""
        for uid, end in ends.items():
            track = self._tracks[uid]
            track.outstanding.append([seq, end, 0, 0])
            if end > track.emitted:
                track.emitted = end

    def acknowledge(self, ack: Ack) -> list[tuple[str, int]]:
        """Apply the outcome of one batch; commit what became contiguous, and add its counts
        to the store's totals (in the same transaction).  Returns the (uid, offset) pairs
        committed.  Raises StateError when the store cannot save them."""
        for uid, (settled_end, complete) in ack.ends.items():
            track = self._tracks.get(uid)
            if track is None:
                continue
            for segment in track.outstanding:
                if segment[0] == ack.seq:
                    segment[2] = settled_end
                    segment[3] = 1 if complete else 0
                    break
        moved: list[tuple[str, int]] = []
        for uid in ack.ends:
            track = self._tracks.get(uid)
            if track is None:
                continue
            before = track.committed
            queue = track.outstanding
            while queue and queue[0][3]:
                track.committed = max(track.committed, queue.popleft()[1])
            if queue and queue[0][2] > track.committed:  # the head batch settled a prefix only
                track.committed = queue[0][2]
            if track.committed > before:
                moved.append((uid, track.committed))
        if moved or ack.counts:
            self.store.commit(
                [(uid, off, self._tracks[uid].path, self._tracks[uid].size) for uid, off in moved], ack.counts
            )
            self.commits += 1 if moved else 0
        for uid in ack.ends:
            track = self._tracks.get(uid)
            if track is not None and not track.reading and self._settled(track):
                del self._tracks[uid]
        return moved

    @staticmethod
    def _settled(track: _Track) -> bool:
        return not track.outstanding and track.committed >= track.emitted

    # --- questions ---------------------------------------------------------------------------
    def committed(self, uid: str) -> int:
        track = self._tracks.get(uid)
        if track is not None:
            return track.committed
        record = self.store.get(uid)
        return record.offset if record is not None else 0

    def settled(self, uid: str) -> bool:
        """Whether everything handed out of *uid* was acknowledged."""
        track = self._tracks.get(uid)
        return track is None or self._settled(track)

    def outstanding(self) -> int:
        """Batches handed out and not yet acknowledged, counted per file generation."""
        return sum(len(t.outstanding) for t in self._tracks.values())

    def forget(self, uids: list[str]) -> None:
        """Drop deleted, fully shipped files from the store."""
        for uid in uids:
            self._tracks.pop(uid, None)
        self.store.forget(uids)
