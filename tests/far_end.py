"""What arrived at the far end: every numbered line counted in the test cluster (a test helper)."""

from __future__ import annotations

import time
from collections import Counter
from typing import Any

TARGET = "logs-amebo-default"


def wait_docs(es: Any, count: int, timeout: float = 60.0, target: str = TARGET) -> None:
    """Wait (bounded) until *target* holds at least *count* documents."""
    deadline = time.monotonic() + timeout
    while len(es.ids(target)) < count:
        assert time.monotonic() < deadline, f"{len(es.ids(target))} of {count} documents after {timeout}s"
        time.sleep(0.02)


def tally(es: Any, n: int, target: str = TARGET) -> tuple[list[int], list[int]]:
    """(lost, doubled) numbered lines (their ``seq``), against 0..n-1."""
    counts = Counter(d["seq"] for d in es.docs(target) if "seq" in d)
    lost = [i for i in range(n) if counts[i] == 0]
    doubled = [i for i, c in counts.items() if c > 1]
    return lost, doubled


def assert_exactly_once(es: Any, n: int, target: str = TARGET) -> None:
    """Lines 0..n-1 are each in *target* once, and nothing else is."""
    lost, doubled = tally(es, n, target)
    assert not lost and not doubled, (
        f"{len(lost)} lost (first {lost[:5]}), {len(doubled)} doubled (first {doubled[:5]})"
    )
    assert len(es.docs(target)) == n, "a document that is no numbered line (half a line?)"
