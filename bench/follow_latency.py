"""Following a live file: per-line latency from write to acknowledgement.

    python bench/follow_latency.py [--rate 5000] [--seconds 20]

A writer appends Amebo-like records at --rate lines/s for --seconds seconds, each carrying
its write time (``"w"``, ns).  A local sink answers ``_bulk`` like Elasticsearch and notes
when each document arrives.  The shipper under test follows the file with its defaults; the
report is p50/p99/max of arrival minus write time, and how many lines arrived (all must).

Measured for amebo-logship, and for Fluent Bit (tuned as bench/fluent_bit.py says, Flush 1) in the same
run when its binary is found (see bench/fluent_bit.py; skipped otherwise).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import fluent_bit as fluent_bit_tool  # bench/ is this script's directory
from es_sink import Handler as SinkHandler
from es_sink import Server as SinkServer

_W = re.compile(rb'"w":(\d+)')


class LatencySink:
    """``_bulk`` answered at once; each document's arrival minus its write time kept."""

    def __init__(self) -> None:
        self.latencies: list[int] = []
        self.lock = threading.Lock()
        sink = self

        class Handler(SinkHandler):  # es_sink's answers; the arrival of each document noted
            def received(self, body: bytes) -> None:
                now = time.time_ns()
                found = [now - int(m) for m in _W.findall(body)]
                with sink.lock:
                    sink.latencies.extend(found)

        self.server = SinkServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def count(self) -> int:
        with self.lock:
            return len(self.latencies)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def write_at_rate(path: Path, rate: int, seconds: float) -> int:
    """Append records at *rate* lines/s (in 10 ms ticks) for *seconds*; returns the count."""
    tick, per_tick = 0.01, max(1, rate // 100)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    padding = "x" * 180
    written, start = 0, time.monotonic()
    try:
        while time.monotonic() - start < seconds:
            chunk = b"".join(
                b'{"@timestamp":"2026-12-02T00:00:00.000000Z","log.level":"info","message":"event_published",'
                b'"action":"order.created","seq":%d,"w":%d,"pad":"%s"}\n'
                % (written + i, time.time_ns(), padding.encode())
                for i in range(per_tick)
            )
            os.write(fd, chunk)
            written += per_tick
            next_at = start + (written / per_tick) * tick
            delay = next_at - time.monotonic()
            if delay > 0:
                time.sleep(delay)  # the writer's pace: this is the load, not a wait for a condition
    finally:
        os.close(fd)
    return written


def percentile(values: list[int], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))] / 1e9


def run_one(name: str, start_shipper, work: Path, rate: int, seconds: float) -> dict[str, float] | None:
    sink = LatencySink()
    log = work / f"{name}.log"
    log.write_bytes(b"")
    proc = start_shipper(log, sink.url, work)
    try:
        time.sleep(2.0)  # its start-up, so the first lines do not count its import time
        written = write_at_rate(log, rate, seconds)
        deadline = time.monotonic() + 30
        while sink.count() < written and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
        sink.close()
    lat = sink.latencies
    if not lat:
        return None
    return {
        "written": written,
        "arrived": len(lat),
        "p50": percentile(lat, 50),
        "p99": percentile(lat, 99),
        "max": max(lat) / 1e9,
    }


def amebo_logship(log: Path, url: str, work: Path) -> subprocess.Popen[bytes]:
    script = Path(sys.executable).with_name("amebo-logship")
    return subprocess.Popen(
        [
            str(script),
            "ship",
            str(log),
            "--es-url",
            url,
            "--state-dir",
            str(work / "state"),
            "--log-format",
            "json",
            "-q",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def fluent_bit(log: Path, url: str, work: Path) -> subprocess.Popen[bytes]:
    conf = fluent_bit_tool.write_config(work / "fluent-bit", log, int(url.rsplit(":", 1)[1]))
    return subprocess.Popen(
        [fluent_bit_tool.find() or "fluent-bit", "-c", str(conf)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=int, default=5000)
    parser.add_argument("--seconds", type=float, default=20.0)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="follow-latency-"))
    try:
        results = {"amebo-logship": run_one("amebo-logship", amebo_logship, work, args.rate, args.seconds)}
        if fluent_bit_tool.find():
            results["fluent-bit"] = run_one("fluent-bit", fluent_bit, work, args.rate, args.seconds)
        else:
            print("fluent-bit not found ($FLUENT_BIT, PATH, ../shared/tools): its row did not run")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"{args.rate} lines/s for {args.seconds:g}s; latency = acknowledgement time - write time")
    print(f"{'shipper':16} {'written':>8} {'arrived':>8} {'p50 s':>8} {'p99 s':>8} {'max s':>8}")
    for name, r in results.items():
        if r is None:
            print(f"{name:16} nothing arrived")
            continue
        print(f"{name:16} {r['written']:8.0f} {r['arrived']:8.0f} {r['p50']:8.3f} {r['p99']:8.3f} {r['max']:8.3f}")
    ours, theirs = results.get("amebo-logship"), results.get("fluent-bit")
    if ours and theirs:
        print(f"p99 ratio amebo-logship / fluent-bit = {ours['p99'] / theirs['p99']:.2f}  (target <= 0.50)")
    if ours:
        print(
            f"amebo-logship p99 {ours['p99']:.3f}s (target <= 0.25s); all arrived: {ours['arrived'] == ours['written']}"
        )


if __name__ == "__main__":
    main()
