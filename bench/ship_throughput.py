"""Shipping throughput: ``amebo-logship ship --once`` against a plain streaming_bulk loop.

    python bench/ship_throughput.py [--lines 1000000] [--growth-lines 4000000] [--keep DIR]

1. Writes a file of realistic Amebo records (about 320 bytes each) with amebo_logging.
2. Starts bench/es_sink.py, which answers ``_bulk`` like Elasticsearch and stores nothing.
3. In the same run, as separate processes measured with ``wait4`` (CPU seconds, peak RSS):
   * ``amebo-logship ship FILE --once`` (lines validated as JSON, metadata fields added,
     offsets committed, exactly-once ids);
   * ``elasticsearch.helpers.streaming_bulk`` over the lines parsed with orjson, defaults
     otherwise.
4. Prints docs/s, MB/s, CPU seconds and peak RSS for each, and the ratios; then ships a file
   of ``--growth-lines`` lines to show whether peak RSS grows with the file (0 skips it).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ACTIONS = ("user.created", "user.deleted", "order.paid", "invoice.sent", "stock.low", "account.closed")
APPS = ("accounts", "billing", "inventory", "notify")


def write_records(path: Path, lines: int) -> float:
    """*lines* records like Amebo's, through amebo_logging itself; returns the mean size."""
    script = f"""
import random
from amebo_logging import configure_logging, get_logger, set_correlation_id, new_correlation_id
stream = open({str(path)!r}, "wb")
configure_logging(stream=stream, fmt="json", service_version="0.9.6")
rng = random.Random(7)
pub, dlv = get_logger("amebo.gists"), get_logger("amebo.aproko")
actions, apps = {ACTIONS!r}, {APPS!r}
for i in range({lines}):
    set_correlation_id(new_correlation_id() if i % 4 == 0 else None)
    if i % 2:
        pub.info("event_published", action=rng.choice(actions), application=rng.choice(apps),
                 event_id=f"evt_{{i}}", payload_size=rng.randint(80, 9000))
    else:
        dlv.info("webhook_delivered", subscription=f"sub_{{i % 97}}", action=rng.choice(actions),
                 **{{"http.response.status_code": 200}})
stream.close()
"""
    subprocess.run([sys.executable, "-c", script], check=True)
    return path.stat().st_size / lines


STREAMING_BULK = """
import sys, orjson
from elasticsearch import Elasticsearch, helpers
es = Elasticsearch(sys.argv[1])
def actions():
    with open(sys.argv[2], "rb") as f:
        for line in f:
            yield {"_index": "logs-amebo-default", "_op_type": "create", "_source": orjson.loads(line)}
ok = sum(1 for good, _ in helpers.streaming_bulk(es, actions()) if good)
print(ok)
"""


def measure(cmd: list[str], env: dict[str, str] | None = None) -> dict[str, float]:
    """Run *cmd*; its wall time, CPU seconds and peak RSS (MB), from wait4."""
    started = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env)
    out = proc.stdout.read() if proc.stdout else b""
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - started
    if proc.returncode != 0:
        raise SystemExit(f"{cmd[0]} failed with {proc.returncode}: {out[-500:]!r}")
    return {
        "wall": wall,
        "cpu": usage.ru_utime + usage.ru_stime,
        "rss_mb": usage.ru_maxrss / 1024,
        "out": out.decode().strip(),
    }


def ship(sink_url: str, path: Path, state: Path) -> dict[str, float]:
    shutil.rmtree(state, ignore_errors=True)
    exe = shutil.which("amebo-logship") or "amebo-logship"
    return measure(
        [exe, "ship", str(path), "--once", "--es-url", sink_url, "--state-dir", str(state)],
        env={**os.environ, "AMEBO_LOG_LEVEL": "warning"},
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=1_000_000)
    parser.add_argument("--growth-lines", type=int, default=4_000_000)
    parser.add_argument("--keep", type=Path, default=None, help="Work in this directory and keep its files.")
    args = parser.parse_args()

    work = args.keep or Path(tempfile.mkdtemp(prefix="amebo-ship-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    data = work / "amebo.log"
    if not data.exists() or data.read_bytes().count(b"\n") != args.lines:
        mean = write_records(data, args.lines)
    else:
        mean = data.stat().st_size / args.lines
    megabytes = data.stat().st_size / 1e6
    sink = subprocess.Popen([sys.executable, str(HERE / "es_sink.py")], stdout=subprocess.PIPE, text=True)
    try:
        port = int(sink.stdout.readline().split()[1])  # type: ignore[union-attr]
        url = f"http://127.0.0.1:{port}"
        ours = ship(url, data, work / "state")
        theirs = measure([sys.executable, "-c", STREAMING_BULK, url, str(data)])
        assert int(theirs["out"]) == args.lines, theirs["out"]
        growth = None
        if args.growth_lines:
            big = work / "amebo-big.log"
            with open(big, "wb") as out:
                for _ in range(max(1, args.growth_lines // args.lines)):
                    with open(data, "rb") as src:
                        shutil.copyfileobj(src, out)
            growth = ship(url, big, work / "state-big")
            growth["lines"] = args.lines * max(1, args.growth_lines // args.lines)
            big.unlink()
    finally:
        sink.terminate()
        sink.wait()
        if args.keep is None:
            shutil.rmtree(work, ignore_errors=True)

    def row(name: str, m: dict[str, float], lines: int, mb: float) -> str:
        return (
            f"{name:<34} {lines / m['wall']:>10,.0f} docs/s {mb / m['wall']:>7.1f} MB/s "
            f"{m['cpu']:>6.2f} CPU s {m['rss_mb']:>6.1f} MB peak RSS  ({m['wall']:.2f}s wall)"
        )

    print(
        f"{args.lines:,} lines, {mean:.0f} bytes each ({megabytes:.0f} MB), python {sys.version.split()[0]}, "
        f"{os.cpu_count()} cores; sink: bench/es_sink.py (stores nothing)"
    )
    print(row("amebo-logship ship --once", ours, args.lines, megabytes))
    print(row("helpers.streaming_bulk (orjson)", theirs, args.lines, megabytes))
    print(
        f"throughput ratio (ours / streaming_bulk): {theirs['wall'] / ours['wall']:.2f}x   "
        f"CPU ratio: {ours['cpu'] / theirs['cpu']:.2f}   target: >= 300,000 docs/s, <= 100 MB RSS"
    )
    if growth is not None:
        print(
            row(
                f"amebo-logship, {growth['lines']:,} lines",
                growth,
                int(growth["lines"]),
                megabytes * growth["lines"] / args.lines,
            )
        )
        print(
            f"peak RSS {args.lines:,} -> {int(growth['lines']):,} lines: {ours['rss_mb']:.1f} -> "
            f"{growth['rss_mb']:.1f} MB"
        )


if __name__ == "__main__":
    main()
