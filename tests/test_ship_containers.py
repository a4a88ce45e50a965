"""Container logs: Docker json-file and CRI files, shipped as the records inside them.

The files are written byte for byte as the runtimes write them: Docker splits a line longer
than 16 KiB into entries whose ``log`` lacks the final newline; the CRI format tags parts
``P`` up to the final ``F``.  Every inner line is numbered (``seq``) and counted on the far
end.  The units and the hypothesis test run in-process on real files; the end-to-end tests
run the real shipper as a subprocess, with kill -9 and rotation.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
from pathlib import Path

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from amebo_logging.ship import formats
from amebo_logging.ship.batch import Batcher, ReadStats
from amebo_logging.ship.discover import Phase
from amebo_logging.ship.items import Framed, Unwrapped
from amebo_logging.ship.state import StateStore

from .amebo_proc import wait_until
from .container_logs import CID, DOCKER_SPLIT, TS, WRITERS, cri_lines, docker_lines, inner
from .far_end import tally, wait_docs
from .reading import Reading
from .shipper_proc import FAST, ShipperProcess, run_ship

# --- framing, in-process ---------------------------------------------------------------------------


def test_detect_the_format_from_the_first_line():
    # given the start of the file, as the reader reads it
    assert formats.detect(docker_lines(inner(1))[0] + b"...") == "docker"
    assert formats.detect(cri_lines(inner(1))[0] + b"...") == "cri"
    assert formats.detect(inner(1).encode() + b"\n") == "json"
    assert formats.detect(b'{"log":"not docker: no time"}\n') == "json"
    assert formats.detect(b"plain text\n") == "json"
    long_first = docker_lines(inner(1, pad=40_000))[0]
    assert formats.detect(long_first[:1024]) == "docker"  # a first entry longer than what was read
    assert formats.detect(long_first + b"more") == "docker"


def test_docker_parts_are_joined_and_keep_the_outer_offsets():
    framer = formats.framer_for("docker", 1 << 20)
    lines = docker_lines(inner(0, pad=40_000)) + docker_lines(inner(1), n=9)
    assert len(lines) == 4  # 3 entries for the long line (16 KiB each at most), 1 for the next
    data = b"".join(lines)
    records = framer.feed(data, 1000)
    assert [orjson.loads(r[2])["seq"] for r in records] == [0, 1]
    first, second = records
    assert (first[0], first[1]) == (1000, 1000 + sum(len(x) for x in lines[:3]))
    assert (second[0], second[1]) == (first[1], 1000 + len(data))
    assert first[3] == TS.format(0) and first[4] == "stdout" and first[5] == 0
    assert framer.covered(1000 + len(data)) == 1000 + len(data)


def test_a_record_still_being_joined_holds_the_covered_offset_back_per_stream():
    framer = formats.framer_for("cri", 1 << 20)
    long_out = cri_lines(inner(0, pad=50_000), "stdout")
    err = cri_lines(inner(1), "stderr", n=5)
    # the runtime interleaves: stdout's first parts, a whole stderr line, stdout's last part
    data = b"".join(long_out[:-1] + err)
    records = framer.feed(data, 0)
    assert [orjson.loads(r[2])["seq"] for r in records] == [1]  # stderr's line is whole: out now
    assert framer.covered(len(data)) == 0  # stdout's line starts at 0 and is not complete
    records = framer.feed(long_out[-1], len(data))
    [joined] = records
    assert joined[2] == b"".join(x.split(b" ", 3)[3][:-1] for x in long_out)  # the parts' text, held, then joined
    assert orjson.loads(joined[2])["seq"] == 0 and joined[0] == 0 and joined[1] == len(data) + len(long_out[-1])
    assert framer.covered(joined[1]) == joined[1]


def test_a_record_over_the_limit_is_cut_and_the_rest_skipped():
    framer = formats.framer_for("docker", 20_000)
    lines = docker_lines(inner(0, pad=60_000)) + docker_lines(inner(1), n=9)
    records = framer.feed(b"".join(lines), 0)
    cut, whole = records
    assert len(cut[2]) == 20_000 and cut[5] != 0 and cut[0] == 0
    assert orjson.loads(whole[2])["seq"] == 1 and whole[5] == 0
    assert framer.covered(sum(len(x) for x in lines)) == sum(len(x) for x in lines)


def test_lines_not_in_the_format_are_records_of_their_own():
    framer = formats.framer_for("docker", 1 << 20)
    data = docker_lines(inner(0))[0] + b"garbage that is no docker entry\n"
    records = framer.feed(data, 0)
    assert [r[2] for r in records][1] == b"garbage that is no docker entry" and records[1][4] == ""


def test_container_metadata_from_the_path(tmp_path):
    d = tmp_path / "containers" / CID
    d.mkdir(parents=True)
    (d / "config.v2.json").write_text(json.dumps({"Name": "/amebo-1", "Config": {"Image": "amebo:0.9.6"}}))
    assert formats.container_fields(str(d / f"{CID}-json.log")) == {
        "container.id": CID,
        "container.name": "amebo-1",
        "container.image.name": "amebo:0.9.6",
    }
    assert formats.container_fields(str(d / f"{CID}-json.log.1"))["container.name"] == "amebo-1"  # rotated
    (d / "config.v2.json").chmod(0)
    if os.geteuid() != 0:  # root reads anything
        assert formats.container_fields(str(d / f"{CID}-json.log")) == {"container.id": CID}
    assert formats.container_fields(f"/var/log/containers/amebo-7d9f_shop_amebo-{CID}.log") == {
        "container.id": CID,
        "kubernetes.namespace": "shop",
        "kubernetes.pod.name": "amebo-7d9f",
        "kubernetes.container.name": "amebo",
    }
    assert formats.container_fields("/var/log/pods/shop_amebo-7d9f_0b1c-2d3e/amebo/0.log.20261202-100000") == {
        "kubernetes.namespace": "shop",
        "kubernetes.pod.name": "amebo-7d9f",
        "kubernetes.pod.uid": "0b1c-2d3e",
        "kubernetes.container.name": "amebo",
    }
    assert formats.container_fields("/var/log/amebo/app.log") == {}


def test_only_the_containers_asked_for(tmp_path):
    base = tmp_path / "containers"
    for name in ("shop-amebo-1", "shop-elasticsearch-1"):
        cid = hashlib.sha256(name.encode()).hexdigest()
        d = base / cid
        d.mkdir(parents=True)
        (d / "config.v2.json").write_text(json.dumps({"Name": "/" + name}))
        (d / f"{cid}-json.log").write_bytes(b"".join(docker_lines(inner(1))))
    reading = Reading(
        [str(base / "*" / "*-json.log")], tmp_path / "state", file_format="auto", containers=["*-amebo-*"]
    )
    reading.scan()
    items = reading.poll()
    assert [dict(i.source.fields)["container.name"] for i in items] == ["shop-amebo-1"]
    phases = list(reading.discovery.phases().values())
    assert phases.count(Phase.SKIPPED) == 1 and not reading.discovery.skipped()  # not reported as compressed
    reading.scan()  # not opened again at every scan
    assert len(reading.discovery.open_files()) == 1
    reading.close()


def test_an_install_without_the_c_unwrapper_says_so_once_and_ships_the_same(tmp_path, monkeypatch):
    """Where amebo-logging was installed without a C compiler, Docker's logs are read the
    careful way: the same records, and one warning saying why it is slower and how to fix it."""
    for n in range(2):
        d = tmp_path / "containers" / (f"{n}" * 64)
        d.mkdir(parents=True)
        (d / (f"{n}" * 64 + "-json.log")).write_bytes(b"".join(docker_lines(inner(n))))
    pattern = [str(tmp_path / "containers" / "*" / "*-json.log")]
    got = {}
    for c in (formats.c_unwrap, None):
        monkeypatch.setattr(formats, "c_unwrap", c)
        reading = Reading(pattern, tmp_path / f"state-{c is None}", file_format="auto")
        reading.scan()
        got[c is None] = [r for item in reading.poll() for r in item.records]
        warned = reading.events_named("docker_logs_read_slowly")
        reading.close()
        if c is None:
            [warning] = warned  # once, not once per file
            assert "no C compiler" in warning["reason"] and "apt-get install gcc python3-dev" in warning["reason"]
        else:
            assert not warned
    assert got[True] == got[False] and len(got[True]) == 2


def _pipeline(tmp_path, fmt="auto", batch_size=7, max_line_bytes=1 << 20):
    logs = tmp_path / "logs"
    logs.mkdir(exist_ok=True)
    reading = Reading([str(logs / "*.log")], tmp_path / "state", file_format=fmt, max_line_bytes=max_line_bytes)
    batches = []
    batcher = Batcher(
        batches.append,
        host_name="h",
        batch_size=batch_size,
        batch_bytes=1 << 30,
        max_line_bytes=max_line_bytes,
        stats=ReadStats(),
    )
    return logs, reading, batcher, batches


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    fmt=st.sampled_from(["docker", "cri"]),
    sizes=st.lists(st.integers(0, 40_000), min_size=1, max_size=25),
    streams=st.lists(st.sampled_from(["stdout", "stderr"]), min_size=25, max_size=25),
    cuts=st.lists(st.integers(1, 9_000), min_size=1, max_size=60),
    split=st.sampled_from([DOCKER_SPLIT, 4096, 1000]),
    batch_size=st.integers(1, 9),
    in_c=st.booleans(),
)
def test_any_split_at_any_read_boundary_gives_every_line_once_and_never_acknowledges_a_part(
    tmp_path_factory, fmt, sizes, streams, cuts, split, batch_size, in_c
):
    """Random lines, split by the runtime at random sizes, interleaved between stdout and
    stderr (a stream's parts stay in order), appended to the file in random pieces that cut
    outer lines anywhere, read after each piece: every line comes out once, whole, and no
    batch may acknowledge past the first part of a line still being joined.  Docker's whole
    entries unwrapped in C (where it is built) or the careful way."""
    unwrap = formats.c_unwrap
    if not in_c:
        formats.c_unwrap = None  # (read when a framer is made)
    try:
        _any_split(tmp_path_factory, fmt, sizes, streams, cuts, split, batch_size)
    finally:
        formats.c_unwrap = unwrap


def _any_split(tmp_path_factory, fmt, sizes, streams, cuts, split, batch_size):
    tmp_path = tmp_path_factory.mktemp("frames")
    logs, reading, batcher, batches = _pipeline(tmp_path, fmt, batch_size)
    per_line = [WRITERS[fmt](inner(i, pad=size), streams[i], n=i * 10, split=split) for i, size in enumerate(sizes)]
    # interleave: take the next part of a random unfinished line, one stream's lines in order
    order, queues = [], {s: [] for s in ("stdout", "stderr")}
    for i in range(len(sizes)):
        queues[streams[i]].append(i)
    pos = dict.fromkeys(range(len(sizes)), 0)
    k = 0
    while any(queues.values()):
        live = [s for s in ("stdout", "stderr") if queues[s]]
        s = live[cuts[k % len(cuts)] % len(live)]
        k += 1
        i = queues[s][0]
        order.append((i, per_line[i][pos[i]]))
        pos[i] += 1
        if pos[i] == len(per_line[i]):
            queues[s].pop(0)
    data = b"".join(part for _, part in order)
    # where each line's first part starts in the file
    starts, at = {}, 0
    for i, part in order:
        starts.setdefault(i, at)
        at += len(part)
    ends = {}
    at = 0
    for i, part in order:
        at += len(part)
        ends[i] = at
    path = logs / "c.log"
    path.write_bytes(b"")
    written = 0
    seen: list[int] = []
    for n in cuts:
        piece = data[written : written + n]
        if not piece:
            break
        with open(path, "ab") as f:
            f.write(piece)
        written += len(piece)
        reading.scan()
        for item in reading.poll():
            assert isinstance(item, (Framed, Unwrapped))
            # nothing before covered belongs to a line not yet handed out
            handed = set(seen) | {orjson.loads(r[2])["seq"] for r in item.records}
            for i, start in starts.items():
                if i not in handed and start < written:  # begun in the file, not handed out
                    assert start >= item.covered, (i, start, item.covered)
            seen += [orjson.loads(r[2])["seq"] for r in item.records]
            batcher.add(item)
    if written < len(data):
        with open(path, "ab") as f:
            f.write(data[written:])
        reading.scan()
        for item in reading.poll():
            seen += [orjson.loads(r[2])["seq"] for r in item.records]
            batcher.add(item)
    batcher.flush()
    assert sorted(seen) == list(range(len(sizes)))  # every line once
    docs = [orjson.loads(op.split(b"\n")[1]) for b in batches for op in map(b.op, range(len(b)))]
    assert sorted(d["seq"] for d in docs) == list(range(len(sizes)))
    for d in docs:
        assert len(d.get("pad", "")) == sizes[d["seq"]] and d["stream"] == streams[d["seq"]]
        assert d["log.offset"] == starts[d["seq"]]
    # each batch's acknowledgement point never passes a line not wholly in it or before it
    shipped: set[int] = set()
    for b in batches:
        shipped |= {orjson.loads(b.op(i).split(b"\n")[1])["seq"] for i in range(len(b))}
        for end in b.source_ends.values():
            for i, start in starts.items():
                if i not in shipped:
                    assert start >= end, (i, start, end)
    reading.close()


# --- end to end: the real shipper, a subprocess ------------------------------------------------


def ship_args(es, pattern, state, *extra):
    return ["ship", pattern, "--es-url", es.url, "--state-dir", str(state), *FAST, *extra]


def saved_offset(state: Path, path: Path) -> int:
    """The offset the state directory holds for the file at *path* now (by its inode): where a
    restart resumes it."""
    ino = path.stat().st_ino
    store = StateStore(state, create=False, lock=False)
    try:
        return max((r.offset for r in store.all() if r.ino == ino), default=0)
    finally:
        store.close()


@pytest.mark.slow
def test_docker_json_file_with_16k_splits_rotation_and_kill_between_parts(es, tmp_path):
    """A container's log as Docker writes it: long lines split at 16 KiB, parts straddling
    batches; rotated by renaming (max-size) while being read; the shipper killed -9 between
    the parts of a line.  Every line once, whole, with the container's metadata."""
    d = tmp_path / "containers" / CID
    d.mkdir(parents=True)
    (d / "config.v2.json").write_text(json.dumps({"Name": "/shop-amebo-1", "Config": {"Image": "amebo:0.9.6"}}))
    log = d / f"{CID}-json.log"
    pattern = str(tmp_path / "containers" / "*" / "*-json.log*")
    state = tmp_path / "state"
    sizes = [0, 100, 20_000, 40_000, 300, 70_000, 16_300, 16_384, 5]

    def line(i):
        return docker_lines(inner(i, pad=sizes[i % len(sizes)]), "stderr" if i % 7 == 3 else "stdout", n=i * 8)

    with open(log, "ab") as f:
        for i in range(300):
            f.write(b"".join(line(i)))
    proc = ShipperProcess(ship_args(es, pattern, state, "--batch-size", "7"))
    try:
        wait_docs(es, 300)
        # Docker rotates: the file is renamed, a new one takes its name
        os.rename(log, d / f"{CID}-json.log.1")
        with open(log, "ab") as f:
            for i in range(300, 400):
                f.write(b"".join(line(i)))
        wait_docs(es, 400)
        # the first parts of a long stdout line, and a whole stderr line after them: once that
        # one is in Elasticsearch, the parts were read (and are held, unacknowledged); kill -9
        # before the long line's last part is written
        parts = docker_lines(inner(400, pad=50_000), n=4000)
        held_at = log.stat().st_size
        with open(log, "ab") as f:
            f.write(b"".join(parts[:-1]) + b"".join(docker_lines(inner(401), "stderr", n=4100)))
        wait_docs(es, 401)
        assert 400 not in {d["seq"] for d in es.docs("logs-amebo-default")}
        # the offset is written up to the held parts (within 0.2 s of its acknowledgement), never past them
        wait_until(lambda: saved_offset(state, log) >= held_at, 30, "the offset before the held parts written")
        assert saved_offset(state, log) == held_at
        proc.proc.send_signal(signal.SIGKILL)
        proc.wait()
    finally:
        proc.kill()
    with open(log, "ab") as f:
        f.write(parts[-1])
        for i in range(402, 450):
            f.write(b"".join(line(i)))
    code, out, err = run_ship(ship_args(es, pattern, state, "--once", "--batch-size", "7"))
    assert code == 0, out + err
    # the offset had stayed before the held parts, so the stderr line after them came again
    assert "1 already there" in out, out
    lost, doubled = tally(es, 450)
    assert not lost and not doubled, (lost[:5], doubled[:5])
    docs = {d["seq"]: d for d in es.docs("logs-amebo-default")}
    assert len(docs[400]["pad"]) == 50_000 and len(docs[5]["pad"]) == 70_000
    for seq, doc in docs.items():
        assert doc["container.id"] == CID and doc["container.name"] == "shop-amebo-1"
        assert doc["container.image.name"] == "amebo:0.9.6"
        assert doc["stream"] == ("stderr" if seq % 7 == 3 or seq == 401 else "stdout")
        assert doc["@timestamp"].startswith("2026-12-02T10:00:00.")  # the record's own time


@pytest.mark.slow
def test_cri_partials_across_batches_with_kubernetes_metadata(es, tmp_path):
    """Kubernetes' /var/log/containers files (CRI): P parts up to F, split across reads and
    batches, heaven-style plain lines among the records; metadata from the file name."""
    base = tmp_path / "var" / "log" / "containers"
    base.mkdir(parents=True)
    log = base / f"amebo-7d9f_shop_amebo-{CID}.log"
    total = 200
    with open(log, "ab") as f:
        for i in range(total):
            f.write(b"".join(cri_lines(inner(i, pad=(i * 997) % 45_000), n=i * 5, split=8192)))
            if i % 50 == 0:
                f.write(TS.format(i).encode() + b" stdout F (1):  connect\n")
    code, out, err = run_ship(ship_args(es, str(base / "*.log"), tmp_path / "state", "--once", "--batch-size", "3"))
    assert code == 0, out + err
    assert "4 not JSON" in out
    lost, doubled = tally(es, total)
    assert not lost and not doubled
    docs = es.docs("logs-amebo-default")
    assert len(docs) == total + 4
    for doc in docs:
        assert doc["kubernetes.namespace"] == "shop" and doc["kubernetes.pod.name"] == "amebo-7d9f"
        assert doc["kubernetes.container.name"] == "amebo" and doc["container.id"] == CID
    plain = [d for d in docs if "seq" not in d]
    assert {d["message"] for d in plain} == {"(1):  connect"}
    assert all(d["@timestamp"].startswith("2026-12-02T10:00:00.") for d in plain)  # the runtime's time


@pytest.mark.slow
def test_an_unfinished_line_at_the_end_is_waited_for_not_lost(es, tmp_path):
    """--once with a line whose last part is not written yet: the lines before it are
    shipped, it is reported as waiting, and the next run ships it whole."""
    base = tmp_path / "c"
    base.mkdir()
    log = base / "x.log"
    parts = cri_lines(inner(2, pad=30_000), n=20)
    log.write_bytes(b"".join(cri_lines(inner(0), n=0) + cri_lines(inner(1), n=10) + parts[:-1]))
    code, out, err = run_ship(ship_args(es, str(base / "*.log"), tmp_path / "state", "--once"))
    assert code == 0, out + err
    assert "delivered 2 documents" in out and "waiting:" in out, out
    with open(log, "ab") as f:
        f.write(parts[-1])
    code, out, err = run_ship(ship_args(es, str(base / "*.log"), tmp_path / "state", "--once"))
    assert code == 0 and "delivered 1 document " in out, out + err
    lost, doubled = tally(es, 3)
    assert not lost and not doubled
    assert len({d["seq"]: d for d in es.docs("logs-amebo-default")}[2]["pad"]) == 30_000
