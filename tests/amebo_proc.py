"""Serving real Amebo (and the test subscriber) as subprocesses, for the slow Amebo tests."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

import httpx
import orjson

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def records(path: Path) -> list[dict[str, Any]]:
    """Every record of *path*; a last line still being written (no newline yet) is left for
    the next look."""
    data = path.read_bytes()
    return [orjson.loads(line) for line in data[: data.rfind(b"\n") + 1].splitlines() if line.strip()]


def wait_until(condition: Callable[[], object], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"{what} not within {timeout}s"
        time.sleep(0.1)


def serve(
    argv: list[str],
    cwd: Path,
    env: dict[str, str],
    port: int,
    stdout: IO[bytes] | int,
    stderr: IO[bytes] | int,
    diagnose: Callable[[], str] = lambda: "",
) -> subprocess.Popen[bytes]:
    """Start *argv* and return once it answers ``/health`` on *port* (at most 30 s)."""
    proc = subprocess.Popen(argv, cwd=cwd, env={**os.environ, **env}, stdout=stdout, stderr=stderr)
    wait_answering(proc, f"http://127.0.0.1:{port}/health", 30, str(argv[:3]), diagnose, subprocess.Popen.kill)
    return proc


def wait_answering(
    proc: subprocess.Popen[bytes],
    url: str,
    timeout: float,
    what: str,
    diagnose: Callable[[], str],
    stop: Callable[[subprocess.Popen[bytes]], object],
) -> None:
    """Return once *url* answers (any status); fail when *proc* exits first, or, after
    *stop*-ping it, when *timeout* seconds pass."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            httpx.get(url, timeout=1)
            return
        except httpx.HTTPError:
            assert proc.poll() is None, f"{what} stopped: {diagnose()}"
            if time.monotonic() > deadline:
                stop(proc)
                raise AssertionError(f"{what} did not answer at {url} within {timeout:g} s: {diagnose()}") from None
            time.sleep(0.1)


def serve_subscriber(port: int, stdout: Path, stderr: Path) -> subprocess.Popen[bytes]:
    """The test subscriber (``tests/subscriber_app.py``) under uvicorn on *port*, its
    records to *stdout*."""
    return serve(
        [sys.executable, "-m", "uvicorn", "tests.subscriber_app:app", "--host", "127.0.0.1", "--port", str(port)],
        ROOT,
        {"PYTHONPATH": str(ROOT)},
        port,
        stdout.open("wb"),
        stderr.open("wb"),
        lambda: stderr.read_text()[-2000:],
    )
