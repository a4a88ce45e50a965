"""Rotation while a writer appends: rename + create, copytruncate, delete + recreate."""

from __future__ import annotations

import os
import shutil
import signal
import threading
import time
from pathlib import Path

import pytest

from .far_end import assert_exactly_once, wait_docs
from .shipper_proc import ShipperProcess, record, ship_args

pytestmark = pytest.mark.slow


class Writer:
    """Appends numbered records to a path, as an application logging would; the test holds
    ``lock`` while it rotates, as logrotate's signal to the application would."""

    def __init__(self, path: Path, total: int, pace: int = 10) -> None:
        self.path, self.total, self.pace = path, total, pace
        self.lock = threading.Lock()
        self.written = 0
        self.fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        self.thread = threading.Thread(target=self._run, daemon=True)

    def reopen(self) -> None:
        os.close(self.fd)
        self.fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)

    def _run(self) -> None:
        while self.written < self.total:
            with self.lock:
                end = min(self.total, self.written + self.pace)
                os.write(self.fd, b"".join(record(i) for i in range(self.written, end)))
                self.written = end
            time.sleep(0.004)  # an application's pace, not a wait for a condition

    def wait_written(self, n: int, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while self.written < n:
            assert time.monotonic() < deadline
            time.sleep(0.002)

    def __enter__(self) -> Writer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.thread.join(timeout=60)
        os.close(self.fd)


def run_with_rotations(es, ship_dir, rotate, pattern="app.log*", total=6000, rotations=3):
    path = ship_dir / "app.log"
    path.touch()
    proc = ShipperProcess(ship_args(es, ship_dir, "--wait-for-files", "--batch-size", "500", pattern=pattern))
    try:
        proc.event("shipping_started")
        with Writer(path, total) as writer:
            for k in range(1, rotations + 1):
                writer.wait_written(total * k // (rotations + 1))
                proc.wait_for(lambda r: r.get("message") == "file_opened")
                with writer.lock:
                    rotate(path, k, writer, proc)
            assert writer.written < total, "the writer finished before the last rotation"
        try:
            wait_docs(es, total)
        except AssertionError:
            seqs = {d["seq"] for d in es.docs("logs-amebo-default")}
            lost = [i for i in range(total) if i not in seqs]
            raise AssertionError(f"{len(lost)} lost: {lost[:5]}...{lost[-5:]}\n" + proc.stderr_text()[-4000:]) from None
        proc.signal(signal.SIGTERM)
        assert proc.wait() == 0
    finally:
        proc.kill()
    assert_exactly_once(es, total)
    return proc


def test_rename_and_create(es, ship_dir):
    def rotate(path, k, writer, proc):
        os.rename(path, path.with_name(f"app.log.{k}"))
        writer.reopen()

    run_with_rotations(es, ship_dir, rotate)


def test_rename_out_of_the_pattern_is_still_finished(es, ship_dir):
    def rotate(path, k, writer, proc):
        os.rename(path, path.with_name(f"old-{k}.txt"))  # no longer matches app.log*
        writer.reopen()

    run_with_rotations(es, ship_dir, rotate)


def test_copytruncate(es, ship_dir):
    def rotate(path, k, writer, proc):
        shutil.copyfile(path, path.with_name(f"app.log.{k}"))
        os.truncate(path, 0)

    proc = run_with_rotations(es, ship_dir, rotate)
    assert any(r.get("message") == "file_truncated" for r in proc.records)


def test_copytruncate_with_only_the_live_file_tailed(es, ship_dir):
    """Tailing app.log alone: the copy is not read, so the shipper must have read every line
    before each truncation; the test waits for that, as logrotate's delaycompress users do."""

    def rotate(path, k, writer, proc):
        wait_docs(es, writer.written)
        shutil.copyfile(path, path.with_name(f"app.log.{k}"))
        os.truncate(path, 0)

    run_with_rotations(es, ship_dir, rotate, pattern="app.log")


def test_delete_and_recreate(es, ship_dir):
    def rotate(path, k, writer, proc):
        os.unlink(path)
        writer.reopen()

    proc = run_with_rotations(es, ship_dir, rotate, pattern="app.log")
    proc.wait_for(lambda r: r.get("message") == "file_forgotten")
