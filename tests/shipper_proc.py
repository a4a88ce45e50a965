"""Run amebo-logship as a real subprocess and watch its JSON log on stderr."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import orjson


class ShipperProcess:
    """``amebo-logship ship ...`` in a subprocess; its stderr records are parsed as they come."""

    def __init__(self, args: Sequence[str], env: dict[str, str] | None = None) -> None:
        full_env = {**os.environ, "AMEBO_LOG_LEVEL": "info", **(env or {})}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "amebo_logging.ship", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=full_env,
        )
        self.records: list[dict[str, Any]] = []
        self.raw_stderr: list[bytes] = []
        self._cond = threading.Condition()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            with self._cond:
                self.raw_stderr.append(line)
                try:
                    self.records.append(orjson.loads(line))
                except orjson.JSONDecodeError:
                    pass
                self._cond.notify_all()
        with self._cond:
            self._cond.notify_all()

    def wait_for(self, predicate: Callable[[dict[str, Any]], bool], timeout: float = 30.0) -> dict[str, Any]:
        """The first stderr record matching *predicate* (waits, bounded)."""
        deadline = time.monotonic() + timeout
        seen = 0
        with self._cond:
            while True:
                for record in self.records[seen:]:
                    if predicate(record):
                        return record
                seen = len(self.records)
                left = deadline - time.monotonic()
                if left <= 0 or (self.proc.poll() is not None and not self._reader.is_alive()):
                    raise AssertionError(f"no matching record within {timeout}s; last: {self.records[-5:]}")
                self._cond.wait(min(left, 0.2))

    def count(self, name: str) -> int:
        with self._cond:
            return sum(1 for r in self.records if r.get("message") == name)

    def wait_count(self, name: str, n: int, timeout: float = 30.0) -> None:
        """Wait until *n* records named *name* have been logged (bounded)."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while sum(1 for r in self.records if r.get("message") == name) < n:
                left = deadline - time.monotonic()
                if left <= 0 or (self.proc.poll() is not None and not self._reader.is_alive()):
                    raise AssertionError(f"fewer than {n} {name!r} records within {timeout}s")
                self._cond.wait(min(left, 0.2))

    def event(self, name: str, timeout: float = 30.0) -> dict[str, Any]:
        return self.wait_for(lambda r: r.get("message") == name, timeout)

    def signal(self, sig: int = signal.SIGTERM) -> None:
        self.proc.send_signal(sig)

    def wait(self, timeout: float = 60.0) -> int:
        code = self.proc.wait(timeout=timeout)
        self._reader.join(timeout=5)
        return code

    @property
    def stdout(self) -> str:
        assert self.proc.stdout is not None
        return self.proc.stdout.read().decode()

    def stderr_text(self) -> str:
        return b"".join(self.raw_stderr).decode(errors="replace")

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)


#: Short delays, so that retries, flushes and rescans take milliseconds in tests.
FAST = ["--backoff-initial", "0.02", "--backoff-max", "0.2", "--flush-interval", "0.05", "--scan-interval", "0.1"]


def ship_args(es: Any, ship_dir: Path, *extra: str, pattern: str = "*.log") -> list[str]:
    """``ship`` over *ship_dir*'s files matching *pattern*, into *es*, its state beside
    *ship_dir*, with :data:`FAST` delays, then *extra*."""
    return [
        "ship",
        str(ship_dir / pattern),
        "--es-url",
        es.url,
        "--state-dir",
        str(ship_dir.parent / "state"),
        *FAST,
        *extra,
    ]


def run_ship(args: Sequence[str], env: dict[str, str] | None = None, timeout: float = 120.0) -> tuple[int, str, str]:
    """Run to completion: (exit code, stdout, stderr)."""
    full_env = {**os.environ, **(env or {})}
    result = subprocess.run(
        [sys.executable, "-m", "amebo_logging.ship", *args], capture_output=True, env=full_env, timeout=timeout
    )
    return result.returncode, result.stdout.decode(), result.stderr.decode(errors="replace")


def on_terminal(argv: Sequence[str], env: dict[str, str], timeout: float = 60.0) -> tuple[int, bytes]:
    """Run *argv* to completion with its stderr on a pseudo-terminal (stdout a pipe): (exit
    code, everything the terminal was shown)."""
    import pty

    main, secondary = pty.openpty()
    proc = subprocess.Popen(list(argv), stdout=subprocess.PIPE, stderr=secondary, env=env)
    os.close(secondary)
    seen = b""
    try:
        code = proc.wait(timeout=timeout)
        while True:
            try:
                chunk = os.read(main, 65536)
            except OSError:  # EIO: the child's side is closed, all was read
                break
            if not chunk:
                break
            seen += chunk
    finally:
        os.close(main)
        proc.kill()
    return code, seen


def write_lines(path: Path, lines: Sequence[bytes], mode: str = "ab") -> None:
    with open(path, mode) as f:
        f.write(b"".join(lines))


def record(seq: int, **fields: Any) -> bytes:
    """An Amebo-like JSON record line with a unique *seq*."""
    doc = {
        "@timestamp": "2026-11-27T10:00:00.000000Z",
        "log.level": "info",
        "message": "event_published",
        "seq": seq,
        **fields,
    }
    return orjson.dumps(doc) + b"\n"
