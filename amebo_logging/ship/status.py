"""``amebo-logship status``: what the state database knows of each file, its lag now, and
how many documents were settled each way since the state was created."""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from .reader import read_head
from .state import StateStore, lock_holder

__all__ = [
    "TOTALS",
    "empty_totals",
    "file_status",
    "render_shipping",
    "render_table",
    "render_totals",
    "shipping",
    "state_status",
]

#: The totals ``status`` reports, in order, with their labels.
TOTALS = (
    ("delivered", "delivered"),
    ("duplicates", "already there"),
    ("failure_store", "kept in the failure store"),
    ("dead_lettered", "dead-lettered"),
)


def _current_size(path: str, head: str) -> int | None:
    """The size of the file now at *path*, if it is still the same file (same first line)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        if read_head(fd) != head:
            return None
        return os.fstat(fd).st_size
    finally:
        os.close(fd)


def _iso(t: float | None) -> str | None:
    return datetime.fromtimestamp(t, UTC).isoformat(timespec="seconds") if t else None


def state_status(state_dir: Path) -> dict[str, Any]:
    """``{"files": [...], "totals": {...}}``; raises StateError if there is no usable state.

    Reads while a shipper runs (no lock is taken)."""
    store = StateStore(state_dir, create=False, lock=False)
    try:
        records = store.all()
        found = store.totals()
        live = store.live()
    finally:
        store.close()
    totals = empty_totals()
    for name, (count, last_at) in found.items():
        totals[name] = count
        if name in ("failure_store", "dead_lettered"):
            totals["last_failure_store" if name == "failure_store" else "last_dead_letter"] = _iso(last_at)
    return {"files": file_status(records), "totals": totals, "shipping": shipping(state_dir, live)}


def shipping(state_dir: Path, live: dict[str, str]) -> dict[str, Any] | None:
    """The shipper running on *state_dir* now (it holds the lock), with what it showed at its
    last commit: requests in flight, the concurrency limit; None when none runs."""
    pid = lock_holder(state_dir)
    if pid is None:
        return None
    try:
        at: float | None = float(live["at"])
    except (KeyError, ValueError):
        at = None
    numbers: dict[str, int | None] = {}
    for key in ("in_flight", "concurrency_limit", "max_in_flight"):
        try:
            numbers[key] = int(live[key])
        except (KeyError, ValueError):
            numbers[key] = None
    return {"pid": pid, **numbers, "at": _iso(at)}


def render_shipping(found: dict[str, Any]) -> str:
    """One line on the running shipper."""
    if found["at"] is None:
        return f"a shipper is running (PID {found['pid']}); it has committed nothing yet"
    return (
        f"a shipper is running (PID {found['pid']}): {found['in_flight']} bulk requests in flight, concurrency "
        f"limit {found['concurrency_limit']} of --max-in-flight {found['max_in_flight']} (at {found['at']})"
    )


def file_status(records: list[Any]) -> list[dict[str, Any]]:
    """One dict per tracked file generation (*records* from the state store)."""
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
                "last_delivery": _iso(r.delivered_at),
            }
        )
    return rows


def empty_totals() -> dict[str, Any]:
    """The totals of a state directory that shipped nothing."""
    return {**{name: 0 for name, _ in TOTALS}, "last_failure_store": None, "last_dead_letter": None}


def render_totals(totals: dict[str, Any]) -> str:
    """One line: the documents settled each way, and when the last went to the failure store."""
    parts = [f"{totals[name]} {label}" for name, label in TOTALS]
    line = "documents since the state was created: " + ", ".join(parts)
    if totals.get("last_failure_store"):
        line += f" (last kept in the failure store at {totals['last_failure_store']})"
    return line


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
