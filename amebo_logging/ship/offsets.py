"""THE owner of shipping offsets: resume, acknowledge (contiguous only), generations, forget.

Modelled on Filebeat's registrar and Vector's end-to-end acknowledgements.  Nothing reaches
this module but values, fed to it by one thread, the shipper's main loop:

* what the reader did (:mod:`.items`): a file generation :class:`~.items.Opened` (a new one
  is registered here), :class:`~.items.Renamed`, :class:`~.items.Released` or
  :class:`~.items.Gone` (a deleted file, forgotten here once all of it is settled), and how
  far its lines reach when handed out (:meth:`Offsets.handed`);
* what each batch carries (:meth:`Offsets.sent`) and the sender's outcome for it
  (:class:`Ack`: per file generation, the end of the settled prefix and whether all of it
  was settled).

Only here do offsets advance, and only past a contiguous run of settled batches, whatever
order batches are answered in.  This module is the only user of the
:class:`~.state.StateStore` during a run.  The reader gets a read-only
:class:`~.discover.OffsetsView` (:meth:`Offsets.view`): where a head resumes, and whether a
file generation is settled.

**Saved at most every** :data:`SAVE_EVERY` **seconds**, as Filebeat's registrar flushes its
registry: what becomes contiguous is applied at once (:meth:`Offsets.committed`, what the
reader resumes from) and written to the store, offsets and counts of every batch since the
last write in one transaction, when the last write is that old (so the first batch after a
quiet spell is written at once), when the loop asks (:meth:`Offsets.save`, each time round),
and at the end.  Under load one write per batch cost the loop up to a tenth of its time (each
statement hands the interpreter lock to the senders and waits to get it back); a crash now
replays at most that much more, which the deterministic ``_id`` and ``create`` absorb.

A file generation is named by its *uid* (see :func:`.identity.file_uid`).
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from .discover import OffsetsView
from .identity import How, Known
from .items import FileEvent, Gone, Opened, Released, Renamed
from .state import StateStore

__all__ = ["SAVE_EVERY", "Ack", "Offsets"]

#: Seconds between writes of the offsets to the store, at most (while batches are acknowledged).
SAVE_EVERY = 0.2


@dataclass(frozen=True, slots=True)
class Ack:
    """The sender's outcome for one batch: per uid, (end of the settled prefix, all settled);
    and how many documents were settled each way (``delivered``, ``failure_store``, ...)."""

    seq: int
    ends: dict[str, tuple[int, bool]]
    counts: dict[str, int] = field(default_factory=dict)


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

    def __init__(
        self, store: StateStore, *, save_every: float = SAVE_EVERY, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.store = store
        self._tracks: dict[str, _Track] = {}
        self.commits = 0  # writes of offsets to the store
        self.live: dict[str, str] = {}  # kept with each write, for `status` (set by the loop)
        self.save_every = save_every
        self._clock = clock
        self._unsaved: dict[str, tuple[int, str, int]] = {}  # uid -> (offset, path, size) not yet written
        self._unsaved_counts: dict[str, int] = {}
        self._saved_at = -float("inf")

    @classmethod
    def open(cls, state_dir: Path, *, dry_run: bool = False) -> Offsets:
        """The offsets in *state_dir* (locked for this run); a dry run's start from a copy in
        memory and never change the directory.  Raises StateError naming what to do."""
        return cls(StateStore.in_memory_copy(state_dir) if dry_run else StateStore(state_dir))

    # --- what the reader may know ------------------------------------------------------------
    def view(self) -> OffsetsView:
        """The read-only view the reader is given."""
        return OffsetsView(self.resume, self.settled)

    def resume(self, head: str) -> Known | None:
        """The newest generation of the file with this *head*, and where to resume it:
        committed, or further when more of it was handed out in this run."""
        record = self.store.latest(head)
        if record is None:
            return None
        track = self._tracks.get(record.uid)
        offset = max(record.offset, self._unsaved.get(record.uid, (0,))[0])
        if track is not None:
            offset = max(offset, track.emitted, track.committed)
        return Known(record.uid, record.generation, offset, record.dev, record.ino)

    # --- what the reader did --------------------------------------------------------------------
    def apply(self, event: FileEvent) -> None:
        """A file event from the reader: a generation opened (registered when it is new),
        renamed, released or gone (forgotten).  Raises StateError when the store cannot save."""
        if isinstance(event, Opened):
            decision, source = event.decision, event.source
            if decision.how in (How.NEW, How.REWRITTEN):
                self.store.register(source.path, event.dev, event.ino, event.head, decision.generation, event.size)
            self._track(source.uid, source.path, event.size, decision.position)
        elif isinstance(event, Renamed):
            track = self._tracks.get(event.uid)
            if track is not None:
                track.path, track.size = event.path, event.size
        elif isinstance(event, Released):
            self._release(event.uid)
        elif isinstance(event, Gone):
            self._tracks.pop(event.uid, None)
            self._unsaved.pop(event.uid, None)
            self.store.forget([event.uid])

    def _track(self, uid: str, path: str, size: int, offset: int) -> None:
        """A reader starts reading *uid* at *offset* (everything before it is settled)."""
        track = self._tracks.get(uid)
        if track is None:
            self._tracks[uid] = _Track(path, size, offset, offset)
        else:
            track.reading, track.path, track.size = True, path, size
            track.emitted = max(track.emitted, offset)

    def _release(self, uid: str) -> None:
        """The reader let go of *uid*: unacknowledged lines stay tracked."""
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

    # --- the pipeline -----------------------------------------------------------------------
    def sent(self, seq: int, ends: dict[str, int]) -> None:
        """Batch *seq* carries lines of each uid up to its end (empty lines included).

        A uid no longer tracked was settled and let go after the batch took it in: every end
        a batch holds was handed out first, and a track is dropped only once everything
        handed out is committed, so the batch carries nothing of it left to commit (a
        container file whose last read only covered a line still being joined)."""
        for uid, end in ends.items():
            track = self._tracks.get(uid)
            if track is None:
                continue
            track.outstanding.append([seq, end, 0, 0])
            if end > track.emitted:
                track.emitted = end

    def acknowledge(self, ack: Ack) -> list[tuple[str, int]]:
        """Apply the outcome of one batch: commit what became contiguous, and count its
        documents, both written to the store with the next :meth:`save` (at once when the
        last write is :attr:`save_every` old).  Returns the (uid, offset) pairs committed.
        Raises StateError when the store cannot save them."""
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
        for uid, off in moved:
            track = self._tracks[uid]
            self._unsaved[uid] = (off, track.path, track.size)
        unsaved_counts = self._unsaved_counts
        for name, n in ack.counts.items():
            if n:
                unsaved_counts[name] = unsaved_counts.get(name, 0) + n
        self.save()
        for uid in ack.ends:
            track = self._tracks.get(uid)
            if track is not None and not track.reading and self._settled(track):
                del self._tracks[uid]
        return moved

    def save(self, *, now: bool = False) -> None:
        """Write what was committed and counted since the last write, in one transaction: when
        the last write is :attr:`save_every` old, or *now* (the end of a run).  Raises
        StateError when the store cannot save it (nothing is dropped: the next call tries
        again)."""
        if not self._unsaved and not self._unsaved_counts:
            return
        at = self._clock()
        if not now and at - self._saved_at < self.save_every:
            return
        tracks = self._tracks
        rows = []
        for uid, (off, path, size) in self._unsaved.items():
            track = tracks.get(uid)
            if track is not None:  # (renamed, or grown, since: as it is now)
                path, size = track.path, track.size
            rows.append((uid, off, path, size))
        self.store.commit(rows, self._unsaved_counts, self.live)
        self.commits += 1 if self._unsaved else 0
        self._unsaved, self._unsaved_counts = {}, {}
        self._saved_at = at

    @staticmethod
    def _settled(track: _Track) -> bool:
        return not track.outstanding and track.committed >= track.emitted

    # --- questions ---------------------------------------------------------------------------
    def committed(self, uid: str) -> int:
        track = self._tracks.get(uid)
        if track is not None:
            return track.committed
        if uid in self._unsaved:
            return self._unsaved[uid][0]
        record = self.store.get(uid)
        return record.offset if record is not None else 0

    def settled(self, uid: str) -> bool:
        """Whether everything handed out of *uid* was acknowledged."""
        track = self._tracks.get(uid)
        return track is None or self._settled(track)

    def outstanding(self) -> int:
        """Batches handed out and not yet acknowledged, counted per file generation."""
        return sum(len(t.outstanding) for t in self._tracks.values())

    def close(self) -> None:
        """Close the store (the end of the run)."""
        self.store.close()
