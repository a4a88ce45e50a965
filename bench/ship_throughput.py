"""Shipping throughput: ``amebo-logship ship --once`` against a plain streaming_bulk loop, and
against Fluent Bit behind a cluster that answers late or pushes back.

    python bench/ship_throughput.py [--lines 1000000] [--growth-lines 4000000] [--keep DIR]
                                    [--delays 0,0.02,0.1,0.5] [--starts 8] [--reject-beyond 3] [--repeat 3]
                                    [--no-fluent-bit]

1. Writes a file of realistic Amebo records (about 345 bytes each) with amebo_logging.
2. Starts bench/es_sink.py, which answers ``_bulk`` like Elasticsearch and stores nothing.
3. In the same run, as separate processes measured with ``wait4`` (CPU seconds, peak RSS):
   * ``amebo-logship ship FILE --once`` (lines validated as JSON, metadata fields added,
     offsets committed, exactly-once ids);
   * ``elasticsearch.helpers.streaming_bulk`` over the lines parsed with orjson, defaults
     otherwise.
4. Ships the same records as a container's Docker json-file log (each line wrapped as
   ``{"log": ..., "stream": ..., "time": ...}``, the long ones split at 16 KiB as Docker does,
   under ``containers/<id>/<id>-json.log`` with its ``config.v2.json``), ``--format docker``;
   the plain file and the Docker one ``--repeat`` times each, interleaved (the median shown,
   and the range of the pairs' ratios).
5. **The network's speed**: for each ``--delays`` D, a sink that answers every bulk D seconds
   late (a distant or busy cluster), amebo-logship with its defaults (and from each
   ``--starts`` value of ``--initial-in-flight``: ``--starts 4,8,16``) and Fluent Bit 5.1 tuned
   (bench/fluent_bit.py), same file, same sink, ``--repeat`` runs of each interleaved (the
   median shown, and the range of the pairs' ratios): docs/s, CPU and peak RSS of each, and ratios
   (and how many of amebo-logship's requests went gzipped: ``--compress auto`` does when round
   trips take 0.2 s or more; the sink takes ``Content-Encoding: gzip`` as Elasticsearch does).
   Then a sink that answers 429 to any bulk arriving while ``--reject-beyond`` K are being
   handled (each taking 0.05 s): every line must arrive once, and few requests be refused.
6. Prints docs/s, MB/s, CPU seconds and peak RSS for each, and the ratios; then ships a file
   of ``--growth-lines`` lines to show whether peak RSS grows with the file (0 skips it).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import fluent_bit  # bench/ is this script's directory

from amebo_logging.ship.concurrency import DEFAULT_INITIAL

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


def ship(sink_url: str, path: Path, state: Path, *extra: str) -> dict[str, float]:
    shutil.rmtree(state, ignore_errors=True)
    exe = shutil.which("amebo-logship") or "amebo-logship"
    return measure(
        [exe, "ship", str(path), "--once", "--es-url", sink_url, "--state-dir", str(state), *extra],
        env={**os.environ, "AMEBO_LOG_LEVEL": "warning"},
    )


CONTAINER_ID = "a1b2c3d4" * 8


def write_docker_log(plain: Path, work: Path) -> Path:
    """*plain*'s lines as Docker's json-file driver writes a container's stdout."""
    import orjson

    directory = work / "containers" / CONTAINER_ID
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "config.v2.json").write_bytes(orjson.dumps({"Name": "/amebo-1", "Config": {"Image": "amebo:0.9.6"}}))
    path = directory / f"{CONTAINER_ID}-json.log"
    split = 16 * 1024
    with open(plain, "rb") as src, open(path, "wb") as out:
        for n, line in enumerate(src):
            text = line.decode()
            when = f"2026-12-02T10:{n // 60_000_000 % 60:02d}:{n // 1_000_000 % 60:02d}.{n % 1_000_000:06d}123Z"
            for i in range(0, len(text), split):
                out.write(orjson.dumps({"log": text[i : i + split], "stream": "stdout", "time": when}) + b"\n")
    return path


def _count_lines(path: Path) -> int:
    """Lines in *path*, read in pieces: the benchmark's own RSS is what its children inherit
    until they exec, and wait4's peak RSS would count it."""
    n = 0
    with open(path, "rb") as f:
        while piece := f.read(1 << 20):
            n += piece.count(b"\n")
    return n


class Sink:
    """bench/es_sink.py in a process of its own, with its latency and push-back."""

    def __init__(self, *extra: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, str(HERE / "es_sink.py"), *extra], stdout=subprocess.PIPE, text=True
        )
        self.port = int(self.proc.stdout.readline().split()[1])  # type: ignore[union-attr]
        self.url = f"http://127.0.0.1:{self.port}"

    def stats(self) -> dict[str, int]:
        with urllib.request.urlopen(self.url + "/_sink/stats") as answer:
            return json.loads(answer.read())

    def close(self) -> None:
        self.proc.terminate()
        self.proc.wait()


def fluent_bit_run(binary: str, log: Path, sink: Sink, work: Path, lines: int) -> dict[str, float]:
    """Fluent Bit, tuned, from the start of *log* until the sink has every line; then stopped."""
    shutil.rmtree(work, ignore_errors=True)
    conf = fluent_bit.write_config(work, log, sink.port)
    before = sink.stats()["docs"]  # (the sink may have served amebo-logship already)
    lines += before
    started = time.perf_counter()
    proc = subprocess.Popen([binary, "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = started + 600
    while sink.stats()["docs"] < lines and time.perf_counter() < deadline and proc.poll() is None:
        time.sleep(0.02)
    wall = time.perf_counter() - started
    got = sink.stats()["docs"]
    proc.send_signal(signal.SIGTERM)
    usage = _reap(proc.pid, grace=30.0)  # Fluent Bit may hold on to chunks it still retries
    return {
        "wall": wall,
        "cpu": usage.ru_utime + usage.ru_stime,
        "rss_mb": usage.ru_maxrss / 1024,
        "out": "",
        "delivered": got - before,
    }


def _reap(pid: int, grace: float) -> resource.struct_rusage:
    """Wait for *pid* up to *grace* seconds after a SIGTERM, then SIGKILL it: its usage."""
    deadline = time.perf_counter() + grace
    while time.perf_counter() < deadline:
        done, _, usage = os.wait4(pid, os.WNOHANG)
        if done:
            return usage
        time.sleep(0.05)
    os.kill(pid, signal.SIGKILL)
    return os.wait4(pid, 0)[2]


def _fluent_bit_lost(theirs: dict[str, float], lines: int) -> str:
    """What to say of a Fluent Bit run that did not deliver every line (its rate is then of what it delivered)."""
    got = int(theirs["delivered"])
    return "" if got >= lines else f" (fluent-bit delivered only {got:,} of {lines:,} lines in {theirs['wall']:.0f}s)"


def _median(runs: list[dict[str, float]]) -> dict[str, float]:
    """The run of median wall time (its CPU and RSS with it)."""
    return sorted(runs, key=lambda m: m["wall"])[len(runs) // 2]


def network_rows(args: argparse.Namespace, data: Path, work: Path) -> None:
    """amebo-logship and Fluent Bit against a sink D seconds away, then against push-back."""
    binary = None if args.no_fluent_bit else fluent_bit.find()
    if binary is None:
        print("fluent-bit not found ($FLUENT_BIT, PATH, ../shared/tools): its rows did not run")
    print(
        f"{'bulk latency':>12}  {'amebo-logship':>14} {'CPU s':>6} {'RSS MB':>7}   "
        f"{'fluent-bit':>10} {'CPU s':>6} {'RSS MB':>7}   {'docs/s':>6} {'CPU':>5} {'RSS':>5}"
    )
    for delay in args.delays:
        # --repeat rounds, a fresh sink per run, each round amebo-logship from every --starts
        # and Fluent Bit, the order reversed every round (this machine's speed moves between
        # minutes): the median run of each, and the range of the rounds' ratios
        whos: list[int | str] = [*args.starts, "theirs"] if binary else list(args.starts)
        runs: dict[int | str, list[dict[str, float]]] = {who: [] for who in whos}
        for r in range(args.repeat):
            for who in whos if r % 2 == 0 else whos[::-1]:
                sink = Sink("--delay", str(delay))
                try:
                    if isinstance(who, int):
                        m = ship(sink.url, data, work / "state-net", "--initial-in-flight", str(who))
                        m.update(sink.stats())
                        assert m["docs"] == args.lines, m
                    else:
                        m = fluent_bit_run(binary, data, sink, work / "fluent-bit", args.lines)
                finally:
                    sink.close()
                runs[who].append(m)
        for start in args.starts:
            ours = _median(runs[start])
            label = f"{delay:g}s" + (f" from {start}" if args.starts != [DEFAULT_INITIAL] else "")
            line = f"{label:>12}  {args.lines / ours['wall']:>14,.0f} {ours['cpu']:>6.2f} {ours['rss_mb']:>7.1f}   "
            if binary:
                theirs = _median(runs["theirs"])
                pairs = sorted(t["wall"] / o["wall"] for o, t in zip(runs[start], runs["theirs"], strict=True))
                line += (
                    f"{args.lines / theirs['wall']:>10,.0f} {theirs['cpu']:>6.2f} {theirs['rss_mb']:>7.1f}   "
                    f"{theirs['wall'] / ours['wall']:>5.2f}x {ours['cpu'] / theirs['cpu']:>5.2f} "
                    f"{ours['rss_mb'] / theirs['rss_mb']:>5.2f}"
                ) + _fluent_bit_lost(theirs, args.lines)
                if len(pairs) > 1:
                    line += f"   (pairs {pairs[0]:.2f}-{pairs[-1]:.2f}x)"
            print(line + f"   (amebo-logship gzipped {int(ours['gzipped'])} of its {int(ours['requests'])} requests)")
    k = args.reject_beyond
    sink = Sink("--delay", "0.05", "--reject-beyond", str(k))
    try:
        ours = ship(sink.url, data, work / "state-429")
        stats = sink.stats()
    finally:
        sink.close()
    share = stats["rejected"] / max(1, stats["requests"])
    once = "each once" if stats["docs"] == args.lines else "NOT each once"
    print(
        f"429 beyond {k} in flight (each bulk 0.05 s): amebo-logship {args.lines / ours['wall']:,.0f} docs/s, "
        f"{stats['docs']:,} of {args.lines:,} lines arrived ({once})"
        f", {stats['rejected']} of {stats['requests']} requests refused ({100 * share:.1f}%; target <= 10%), "
        f"at most {stats['max_active']} handled at once"
    )
    if binary:
        sink = Sink("--delay", "0.05", "--reject-beyond", str(k))
        try:
            theirs = fluent_bit_run(binary, data, sink, work / "fluent-bit", args.lines)
            stats = sink.stats()
        finally:
            sink.close()
        print(
            f"429 beyond {k} in flight: fluent-bit {args.lines / theirs['wall']:,.0f} docs/s, "
            f"{stats['rejected']} of {stats['requests']} requests refused "
            f"({100 * stats['rejected'] / max(1, stats['requests']):.1f}%)" + _fluent_bit_lost(theirs, args.lines)
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=1_000_000)
    parser.add_argument("--growth-lines", type=int, default=4_000_000)
    parser.add_argument("--keep", type=Path, default=None, help="Work in this directory and keep its files.")
    parser.add_argument(
        "--delays", type=lambda v: [float(x) for x in v.split(",") if x], default=[0.0, 0.02, 0.1, 0.5],
        help="Bulk latencies (seconds) of the network rows, comma-separated ('' skips them).",
    )  # fmt: skip
    parser.add_argument(
        "--starts", type=lambda v: [int(x) for x in v.split(",") if x], default=[DEFAULT_INITIAL],
        help="--initial-in-flight values amebo-logship runs the network rows with, comma-separated.",
    )  # fmt: skip
    parser.add_argument("--reject-beyond", type=int, default=3)
    parser.add_argument(
        "--repeat", type=int, default=3, help="Runs of each shipper per bulk latency, interleaved (the median shown)."
    )
    parser.add_argument("--no-fluent-bit", action="store_true", help="Skip Fluent Bit's rows.")
    args = parser.parse_args()

    work = args.keep or Path(tempfile.mkdtemp(prefix="amebo-ship-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    data = work / "amebo.log"
    if not data.exists() or _count_lines(data) != args.lines:
        mean = write_records(data, args.lines)
    else:
        mean = data.stat().st_size / args.lines
    megabytes = data.stat().st_size / 1e6
    sink = subprocess.Popen([sys.executable, str(HERE / "es_sink.py")], stdout=subprocess.PIPE, text=True)
    try:
        port = int(sink.stdout.readline().split()[1])  # type: ignore[union-attr]
        url = f"http://127.0.0.1:{port}"
        docker_log = write_docker_log(data, work)
        docker_mb = docker_log.stat().st_size / 1e6
        # the plain file and its Docker json-file form, --repeat pairs, the order swapped
        # every pair (this machine's speed moves between minutes): the median run of each
        plain_runs: list[dict[str, float]] = []
        docker_runs: list[dict[str, float]] = []
        for r in range(args.repeat):
            for which in ("plain", "docker") if r % 2 == 0 else ("docker", "plain"):
                if which == "plain":
                    plain_runs.append(ship(url, data, work / "state"))
                else:
                    docker_runs.append(ship(url, docker_log, work / "state-docker", "--format", "docker"))
        ours, docker = _median(plain_runs), _median(docker_runs)
        docker["pairs"] = sorted(p["wall"] / d["wall"] for p, d in zip(plain_runs, docker_runs, strict=True))
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
    try:
        report(args, data, work, mean, megabytes, ours, docker, docker_mb, theirs, growth)
        if args.delays:
            print()
            network_rows(args, data, work)
    finally:
        if args.keep is None:
            shutil.rmtree(work, ignore_errors=True)


def report(args, data, work, mean, megabytes, ours, docker, docker_mb, theirs, growth) -> None:
    """The first table: amebo-logship, its Docker path and streaming_bulk, against a sink at once."""

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
    print(row("amebo-logship, Docker json-file", docker, args.lines, docker_mb))
    print(row("helpers.streaming_bulk (orjson)", theirs, args.lines, megabytes))
    print(
        f"Docker json-file: {ours['wall'] / docker['wall']:.2f} of the plain throughput "
        f"(the wrapper costs {100 * (1 - ours['wall'] / docker['wall']):.0f}%; target: under 30%)"
        + (f"   (pairs {docker['pairs'][0]:.2f}-{docker['pairs'][-1]:.2f})" if len(docker["pairs"]) > 1 else "")
    )
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
