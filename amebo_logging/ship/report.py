"""What a person sees of a run: the progress bar, the summary and the exit status.

All of it is read from :class:`~.shipper.Snapshot` and :class:`~.shipper.Summary` values;
nothing here steers the shipper.  The progress bar owns the bottom line of the terminal:
the shipper's own log lines are written above it (:class:`LogStream`), never through it.
"""

from __future__ import annotations

import signal
import sys
import threading
import time
from typing import IO

from .bulk import DeliveryStats
from .errors import EXIT_AUTH, EXIT_CONFIG, EXIT_OK, EXIT_STATE, EXIT_UNFINISHED
from .shipper import Snapshot, Summary

__all__ = ["LogStream", "Progress", "exit_code", "human_bytes", "summary_lines"]


def human_bytes(n: float) -> str:
    """``1536`` -> ``1.5 KiB``."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"


def bar(done: int, total: int, width: int) -> str:
    """``[###.....] 1.0 KiB / 4.0 KiB``: *done* bytes of *total*, *width* cells."""
    filled = int(width * done / total)
    return f"[{'#' * filled}{'.' * (width - filled)}] {human_bytes(done)} / {human_bytes(total)}"


def waiting_text(d: DeliveryStats) -> str:
    """What the bar says while Elasticsearch does not answer: since when, and its last error."""
    assert d.last_failure is not None
    since = d.failing_since or d.last_failure[0]
    waited = max(0.0, time.time() - since)
    reason = d.last_failure[2]
    if len(reason) > 80:
        reason = reason[:77] + "..."
    return f"waiting for Elasticsearch for {waited:.0f}s: {reason}"


class Progress:
    """A one-line progress bar on a terminal for ``--once``: bytes shipped of the total,
    documents per second, the ETA, requests in flight of the concurrency limit, dead letters."""

    def __init__(self, stream: IO[str] | None = None, width: int = 28) -> None:
        self.stream = stream or sys.stderr
        self.width = width
        self.start: tuple[float, int, int] | None = None  # (time, committed bytes, settled docs)
        self.total = 0
        self.line = ""
        self.lock = threading.Lock()
        self.last_draw = 0.0

    def __call__(self, snap: Snapshot) -> None:
        now = time.monotonic()
        if now - self.last_draw < 0.2:
            return
        self.last_draw = now
        committed = sum(f.committed for f in snap.files)
        d = snap.delivery
        settled = d.delivered + d.duplicates + d.dead_lettered + d.failure_store
        if self.start is None:
            self.start = (now, committed, settled)
        t0, c0, n0 = self.start
        self.total = max(self.total, sum(f.size for f in snap.files) - c0)
        done = max(0, committed - c0)
        total = max(self.total, done, 1)
        elapsed = max(now - t0, 1e-6)
        if d.failing:
            self.draw(f"{bar(done, total, self.width)}  {waiting_text(d)}")
            return
        rate = (settled - n0) / elapsed
        eta = (total - done) / (done / elapsed) if done else float("inf")
        eta_text = f"{eta:4.0f}s" if eta != float("inf") else "   ?"
        self.draw(
            f"{bar(done, total, self.width)}  "
            f"{rate:,.0f} docs/s  ETA {eta_text}  {snap.in_flight}/{snap.concurrency_limit} requests in flight  "
            f"dead letters {d.dead_lettered}"
        )

    def draw(self, line: str) -> None:
        with self.lock:
            self.line = line
            self.stream.write("\r\x1b[2K" + line)
            self.stream.flush()

    def above(self, text: str) -> None:
        """Write *text* (whole lines) above the bar, then draw the bar again below it."""
        with self.lock:
            if self.line:
                self.stream.write("\r\x1b[2K")
            self.stream.write(text)
            if self.line:
                self.stream.write(self.line)
            self.stream.flush()

    def finish(self) -> None:
        with self.lock:
            if self.line:
                self.stream.write("\r\x1b[2K")
                self.stream.flush()
                self.line = ""


class LogStream:
    """A binary stream for ``configure_logging(stream=...)``: each log line goes above the
    progress bar when there is one, else straight to *target*."""

    def __init__(self, target: IO[str], progress: Progress | None) -> None:
        self.target = target
        self.progress = progress
        self.name = getattr(target, "name", "<stderr>")

    def write(self, data: bytes) -> int:
        text = data.decode("utf-8", "replace")
        if self.progress is not None:
            self.progress.above(text)
        else:
            self.target.write(text)
            self.target.flush()
        return len(data)

    def flush(self) -> None:
        self.target.flush()

    def isatty(self) -> bool:
        try:
            return bool(self.target.isatty())
        except (AttributeError, ValueError):
            return False


def _files(n: int) -> str:
    return f"{n} file" + ("" if n == 1 else "s")


def summary_lines(s: Summary) -> list[str]:
    """The summary a run prints on stdout: what was delivered, then what is left and why."""
    snap = s.snapshot
    d, r = snap.delivery, snap.read
    rate = (d.delivered + d.duplicates) / s.seconds if s.seconds > 0 else 0.0
    verb = "printed" if s.dry_run else "delivered"
    head = (
        f"{verb} {d.delivered} document{'' if d.delivered == 1 else 's'} in {s.seconds:.2f}s ({rate:,.0f}/s), "
        f"{d.duplicates} already there, "
        f"{d.dead_lettered} dead-lettered, "
        + (f"{d.failure_store} kept in the failure store, " if d.failure_store else "")
        + f"{r.lines} lines read ({r.parse_failures} not JSON, "
        f"{r.truncated} truncated, {r.empty} empty skipped)"
    )
    lines = [head]
    if s.resumed_bytes:
        earlier = (
            f"{human_bytes(s.resumed_bytes)} of {_files(s.resumed_files)} shipped by an earlier run "
            f"(the offsets saved in {s.state_dir})"
        )
        if s.dry_run:
            lines.append(
                f"not printed: {earlier}; a dry run starts where shipping would. To print every line, "
                'give it an empty state directory: --state-dir "$(mktemp -d)"'
            )
        else:
            lines.append(f"skipped: {earlier}, so not sent again")
    if d.dead_lettered:
        lines.append(f"dead letters: {d.dead_lettered} refused documents are kept with their reason in {s.dead_letter}")
    if d.failure_store:
        lines.append(
            f"failure store: Elasticsearch could not index {d.failure_store} documents and kept them in "
            f"{s.target}::failures; each documents_in_failure_store record names a query that shows why "
            f"(ES|QL: FROM {s.target}::failures), or open the 'Amebo: failure store' search in Kibana"
        )
    for path, nbytes in sorted(s.partial_lines.items()):
        lines.append(
            f"waiting: {path} ends with {nbytes} bytes of a line not complete yet (no newline, or a container "
            "line's last part); it ships once complete"
        )
    for w in s.waiting("empty", "no_first_line"):
        lines.append(
            f"waiting: {w.path} has no complete first line yet ({'empty' if w.reason == 'empty' else 'no newline'})"
        )
    for w in s.waiting("unreadable"):
        lines.append(f"not read: {w.path}: {w.detail}: fix its permissions and run again")
    for path in snap.skipped:
        lines.append(f"skipped: {path} is compressed")
    if s.fatal is not None:
        lines.append(f"stopped: {s.fatal.message}")
    if s.state_error is not None:
        lines.append(f"stopped: {s.state_error}")
    if s.ended == "stopped" and s.signal:
        name = signal.Signals(s.signal).name
        left = (
            f"{human_bytes(s.left_bytes)} of {_files(len([f for f in snap.files if f.deliverable]))} not shipped"
            if s.left_bytes
            else "nothing left to ship"
        )
        lines.append(f"interrupted by {name}: {left}; run again to resume")
    elif s.left_bytes and s.ended != "done":
        lines.append(f"left: {human_bytes(s.left_bytes)} not shipped; run again to resume")
    return lines


def exit_code(s: Summary, once: bool) -> int:
    """The exit status a script can trust (see :mod:`.errors`)."""
    if s.state_error is not None:
        return EXIT_STATE
    if s.fatal is not None:
        return {
            "credentials": EXIT_AUTH,
            "privileges": EXIT_AUTH,
            "target": EXIT_CONFIG,
            "unreachable": EXIT_UNFINISHED,
        }.get(s.fatal.kind, EXIT_UNFINISHED)
    if not once:
        return EXIT_OK
    if s.ended == "stopped":
        if s.left_bytes or s.unsettled:
            return 128 + (s.signal or int(signal.SIGTERM))
        return EXIT_OK
    if s.waiting("unreadable"):
        return EXIT_STATE
    return EXIT_OK
