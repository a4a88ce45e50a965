"""``amebo-logship status``: what the state database knows of each file, and its lag now."""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from .state import StateStore
from .tail import head_hash

__all__ = ["file_status", "render_table"]


def _current_size(path: str, head: str) -> int | None:
    """The size of the file now at *path*, if it is still the same file (same first line)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        if head_hash(fd) != head:
            return None
        return os.fstat(fd).st_size
    finally:
        os.close(fd)


def file_status(state_dir: Path) -> list[dict[str, Any]]:
    """One dict per tracked file generation; raises StateError if there is no usable state."""
    store = StateStore(state_dir, create=False)
    try:
        records = store.all()
    finally:
        store.close()
    rows = []
    for r in records:
        size = _current_size(r.path, r.head_hash)
        rows.append(
            {
                "file": r.path,
                "id": r.uid,
                "generation": r.generation,
                "offset": r.offset,
                "size": size if size is not None else r.size,
                "lag_bytes": max(0, (size if size is not None else r.size) - r.offset),
                "present": size is not None,
                "last_delivery": datetime.fromtimestamp(r.delivered_at, UTC).isoformat(timespec="seconds")
                if r.delivered_at
                else None,
            }
        )
    return rows


def render_table(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return "no files tracked yet"
    header = ("FILE", "ID", "OFFSET", "SIZE", "LAG", "LAST DELIVERY")
    body = [
        (
            row["file"] + ("" if row["present"] else " (moved or gone)"),
            f"{row['id']}/{row['generation']}",
            str(row["offset"]),
            str(row["size"]),
            str(row["lag_bytes"]),
            row["last_delivery"] or "never",
        )
        for row in rows
    ]
    widths = [max(len(x) for x in col) for col in zip(header, *body, strict=True)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip() for line in (header, *body)]
    return "\n".join(lines)
