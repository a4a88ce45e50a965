"""The reading side in-process, fed the way the shipper's loop feeds it (a test helper)."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from amebo_logging.ship.discover import Discovery
from amebo_logging.ship.identity import Decision, How, file_uid
from amebo_logging.ship.items import Chunk, Framed, Item, Line, LongLine, Notice, Opened, Source, Unwrapped
from amebo_logging.ship.offsets import Ack, Offsets
from amebo_logging.ship.state import StateStore


class Reading:
    """A :class:`Discovery` over *patterns* and the owner of offsets over a state store in
    *state_dir*; each call applies what the reader returned, as the loop does, and returns
    the lines.  Notices are kept as (level, event, fields)."""

    def __init__(self, patterns: Iterable[str], state_dir: Path, **kwargs: Any) -> None:
        self.store = StateStore(state_dir)
        self.offsets = Offsets(self.store, save_every=0.0)  # (every commit written at once)
        self.discovery = Discovery(list(patterns), self.offsets.view(), **kwargs)
        self.notices: list[tuple[str, str, dict[str, Any]]] = []
        self.events: list[Item] = []  # file events, in order
        self._seq = 0

    def apply(self, items: list[Item]) -> list[Line]:
        lines: list[Line] = []
        for item in items:
            if isinstance(item, (Chunk, Framed, LongLine, Unwrapped)):
                self.offsets.handed(item.source.uid, item.end)
                lines.append(item)
            elif isinstance(item, Notice):
                self.notices.append((item.level, item.event, item.fields))
            else:
                self.events.append(item)
                self.offsets.apply(item)
        return lines

    def scan(self) -> list[Line]:
        return self.apply(self.discovery.scan())

    def poll(self, max_bytes: int = 4 << 20) -> list[Line]:
        return self.apply(self.discovery.poll(max_bytes))

    def retire(self) -> list[Line]:
        return self.apply(self.discovery.retire())

    def acknowledge(self, lines: list[Line]) -> None:
        """Send and acknowledge *lines* as one batch."""
        ends: dict[str, int] = {}
        for line in lines:
            ends[line.source.uid] = max(ends.get(line.source.uid, 0), line.end)
        if not ends:
            return
        self._seq += 1
        self.offsets.sent(self._seq, ends)
        self.offsets.acknowledge(Ack(self._seq, {u: (e, True) for u, e in ends.items()}))

    def events_named(self, name: str) -> list[dict[str, Any]]:
        return [fields for _level, event, fields in self.notices if event == name]

    def close(self) -> None:
        self.discovery.close()
        self.offsets.close()


def open_new(offsets: Offsets, path: str, dev: int, ino: int, head: str, size: int = 0) -> str:
    """Tell *offsets* a new file generation is being read from byte 0 (as the reader would);
    its uid."""
    uid = file_uid(head, 0)
    decision = Decision(How.NEW, uid, 0, 0)
    offsets.apply(Opened(Source.make(uid, path), head, dev, ino, size, decision))
    return uid
