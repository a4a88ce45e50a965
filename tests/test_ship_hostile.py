"""Hostile operations, each a regression test of a way lines were lost, doubled or stuck.

Every written line is numbered (``seq``) and counted on the far end: lost, doubled and
dead-lettered are told apart.  Faults are combined where operators combine them: an outage
during a rotation, a copytruncate under a paused reader, a limit of descriptors with
hundreds of files.  Real subprocesses, real signals, real files.
"""

from __future__ import annotations

import ctypes
import os
import resource
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import orjson
import pytest

from .far_end import TARGET, assert_exactly_once, tally, wait_docs
from .shipper_proc import FAST, ShipperProcess, record, run_ship, ship_args, write_lines

pytestmark = pytest.mark.slow


def args(es, ship_dir, pattern="*.log", *extra):
    return ship_args(es, ship_dir, *extra, pattern=pattern)


def wait_until(condition, timeout=30.0, what="condition"):
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"{what} not met within {timeout}s"
        time.sleep(0.01)


def without_root_file_override():
    """preexec_fn: as root, drop the capabilities that bypass file permissions, so chmod 000
    means what it means for every other user (CI runs as root)."""
    if os.geteuid() != 0:
        return
    libc = ctypes.CDLL(None, use_errno=True)
    for cap in (1, 2):  # CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH
        if libc.prctl(24, cap, 0, 0, 0) != 0:  # PR_CAPBSET_DROP
            raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP)")


def run_restricted(argv, **kwargs):
    return subprocess.run(
        [sys.executable, "-m", "amebo_logging.ship", *argv],
        capture_output=True,
        text=True,
        timeout=120,
        preexec_fn=without_root_file_override,
        **kwargs,
    )


# --- 1. copytruncate while reading is paused -------------------------------------------------


def test_copytruncate_while_elasticsearch_is_down_and_the_file_regrows(es, ship_dir):
    path = ship_dir / "app.log"
    write_lines(path, [record(i) for i in range(500)])
    proc = ShipperProcess(args(es, ship_dir, "app.log*", "--batch-size", "200"))
    try:
        wait_docs(es, 500)
        es.stop()
        write_lines(path, [record(i) for i in range(500, 6000)])  # read up to the in-flight limit, then paused
        proc.wait_count("bulk_request_failed", 2)
        shutil.copyfile(path, ship_dir / "app.log.1")  # logrotate copytruncate...
        with open(path, "r+b") as f:
            f.truncate(0)
        write_lines(path, [record(i) for i in range(6000, 30_000)])  # ...and the live file regrows past it
        time.sleep(0.3)  # a few scans while paused: the copy is found while the old reader holds the identity
        es.start()
        wait_docs(es, 30_000, timeout=60)
        proc.signal(signal.SIGTERM)
        assert proc.wait() == 0
        assert proc.count("file_truncated") >= 1
    finally:
        proc.kill()
    assert_exactly_once(es, 30_000)


# --- 2. rename rotation during an outage, pattern *.log ----------------------------------------


def test_two_rename_rotations_during_one_outage(es, ship_dir):
    path = ship_dir / "app.log"
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    n = 0

    def write(k):
        nonlocal n
        os.write(fd, b"".join(record(i) for i in range(n, n + k)))
        n += k

    write(400)
    proc = ShipperProcess(args(es, ship_dir, "*.log", "--batch-size", "100"))
    try:
        wait_docs(es, 400)
        es.stop()
        for rotation in (1, 2):
            write(1200)
            proc.wait_count("bulk_request_failed", rotation)
            opened = proc.count("file_opened")
            if rotation == 2:
                os.rename(ship_dir / "app.log.1", ship_dir / "app.log.2")
            os.rename(path, ship_dir / "app.log.1")  # out of the pattern *.log
            os.close(fd)
            fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            write(1)  # its first line, so it can be identified
            # the new file is opened (and its descriptor held) while sending is blocked
            proc.wait_count("file_opened", opened + 1)
        write(1200)
        es.start()
        wait_docs(es, n, timeout=60)
        proc.signal(signal.SIGTERM)
        assert proc.wait() == 0
    finally:
        os.close(fd)
        proc.kill()
    assert_exactly_once(es, n)


# --- 3. the open-file limit ---------------------------------------------------------------------


def test_four_hundred_files_under_ulimit_256(es, ship_dir):
    for f in range(400):
        write_lines(ship_dir / f"f{f:03d}.log", [record(f * 20 + i) for i in range(20)])

    def limit():
        resource.setrlimit(resource.RLIMIT_NOFILE, (256, 256))

    result = subprocess.run(
        [sys.executable, "-m", "amebo_logging.ship", *args(es, ship_dir, "*.log", "--once")],
        capture_output=True,
        text=True,
        timeout=120,
        preexec_fn=limit,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "delivered 8000 documents" in result.stdout
    assert '"open_file_limit_reached"' in result.stderr
    assert_exactly_once(es, 8000)


# --- 4 and 8. credentials refused: per item, per request, mid-run --------------------------------


def test_items_refused_for_privileges_stop_with_exit_4_and_nothing_is_lost(es, ship_dir):
    write_lines(ship_dir / "app.log", [record(i) for i in range(5000)])
    es.item_forbidden["logs-amebo-*"] = "k3y1d"
    dead = ship_dir.parent / "dead.ndjson"
    code, out, err = run_ship(args(es, ship_dir, "*.log", "--once", "--dead-letter", str(dead)))
    assert code == 4, err
    assert "grant the create_doc and auto_configure index privileges on logs-amebo-default" in out
    assert not dead.exists() or dead.read_bytes() == b""
    status = run_ship(["status", "--state-dir", str(ship_dir.parent / "state"), "--json"])
    assert [row["offset"] for row in orjson.loads(status[1])["files"]] == [0]  # nothing committed past the refusal
    es.item_forbidden.clear()  # the key is fixed: everything is sent
    code, out, err = run_ship(args(es, ship_dir, "*.log", "--once"))
    assert code == 0, err
    assert_exactly_once(es, 5000)


def test_403_on_every_bulk_request_is_exit_4_at_once(es, ship_dir):
    write_lines(ship_dir / "app.log", [record(i) for i in range(100)])
    es.forbidden["/logs-amebo-default/_bulk"] = 403
    started = time.monotonic()
    code, out, err = run_ship(args(es, ship_dir, "*.log", "--once"))
    assert code == 4 and time.monotonic() - started < 30, err
    assert "grant the create_doc" in out


def test_401_mid_run_stops_with_exit_4_and_a_restart_resumes(ship_dir):
    from .fake_es import FakeElasticsearch

    with FakeElasticsearch(api_key="old-key") as es:
        path = ship_dir / "app.log"
        write_lines(path, [record(i) for i in range(1000)])
        env = {"AMEBO_LOGSHIP_API_KEY": "old-key"}
        proc = ShipperProcess(args(es, ship_dir, "*.log"), env=env)
        try:
            wait_docs(es, 1000)
            es.api_key = "new-key"  # rotated on the cluster
            write_lines(path, [record(i) for i in range(1000, 2000)])
            assert proc.wait(timeout=30) == 4
            assert "refused the credentials (HTTP 401)" in proc.stderr_text()
        finally:
            proc.kill()
        code, out, err = run_ship(args(es, ship_dir, "*.log", "--once"), env={"AMEBO_LOGSHIP_API_KEY": "new-key"})
        assert code == 0, err
        assert_exactly_once(es, 2000)


# --- 5. a line no parser can take ----------------------------------------------------------------


def test_a_line_nested_1005_levels_deep_is_shipped_and_the_file_goes_on(es, ship_dir):
    deep = b'{"a":' * 1005 + b"1" + b"}" * 1005 + b"\n"
    write_lines(ship_dir / "app.log", [record(0), deep, record(1), b"[" * 5000 + b"\n", record(2)])
    code, out, err = run_ship(args(es, ship_dir, "*.log", "--once"))
    assert code == 0, err
    docs = es.docs(TARGET)
    assert sorted(d["seq"] for d in docs if "seq" in d) == [0, 1, 2]
    odd = [d for d in docs if "seq" not in d]
    assert len(odd) == 2 and all(d["error.message"] for d in odd)


# --- 6. --once always finishes --------------------------------------------------------------------


def test_once_finishes_with_empty_unfinished_and_identical_first_lines(es, ship_dir):
    (ship_dir / "empty.log").touch()  # what logrotate's create leaves
    (ship_dir / "unfinished.log").write_bytes(b'{"only":"line, no newline"')
    same = record(0)
    write_lines(ship_dir / "a.log", [same, record(1)])
    write_lines(ship_dir / "b.log", [same, record(1), record(2)])  # same first line: taken for a copy of a.log
    started = time.monotonic()
    code, out, err = run_ship(args(es, ship_dir, "*.log", "--once"))
    assert code == 0, err
    assert time.monotonic() - started < 20
    assert "empty.log has no complete first line yet (empty)" in out
    assert "unfinished.log has no complete first line yet (no newline)" in out
    assert sorted(d["seq"] for d in es.docs(TARGET)) == [0, 1, 2]


# --- 7. 413 from Elasticsearch or a proxy -----------------------------------------------------------


@pytest.mark.parametrize("style", ["elasticsearch", "proxy"])
def test_413_splits_requests_and_dead_letters_only_a_document_too_big_alone(es, ship_dir, style):
    es.max_content_length = 1 << 20  # a 1 MB limit, against the default 10 MiB batches
    es.too_large_style = style
    lines = [record(i, padding="x" * 200) for i in range(20_000)]
    lines.insert(7000, record(-1, padding="y" * (2 << 20)))  # one document over the limit on its own
    write_lines(ship_dir / "app.log", lines)
    dead = ship_dir.parent / "dead.ndjson"
    # (a proxy limits the bytes sent: gzipped, the batches and the big document would fit)
    plain = ["--compress", "off"] if style == "proxy" else []
    code, out, err = run_ship(
        args(es, ship_dir, "*.log", "--once", "--dead-letter", str(dead), "--max-line-bytes", str(4 << 20), *plain)
    )
    assert code == 0, err
    assert "set --batch-bytes below" in err
    assert_exactly_once(es, 20_000)
    [entry] = [orjson.loads(x) for x in dead.read_bytes().splitlines()]
    assert entry["status"] == 413 and orjson.loads(entry["line"])["seq"] == -1


# --- 9. two shippers, one state directory ------------------------------------------------------------


def test_a_second_shipper_on_the_same_state_directory_exits_5_naming_the_first(es, ship_dir):
    write_lines(ship_dir / "app.log", [record(i) for i in range(100)])
    first = ShipperProcess(args(es, ship_dir))
    try:
        first.event("shipping_started")
        code, out, err = run_ship(args(es, ship_dir, "*.log", "--once"))
        assert code == 5
        assert f"another amebo-logship (PID {first.proc.pid}) is using the state directory" in err
        wait_docs(es, 100)
    finally:
        first.kill()
    assert_exactly_once(es, 100)


# --- 10. a full disk under the state directory --------------------------------------------------------


@pytest.fixture
def small_disk(tmp_path):
    mount = tmp_path / "small"
    mount.mkdir()
    result = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mount)], capture_output=True)
    if result.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here: {result.stderr.decode().strip()}")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=False)


def test_disk_full_under_the_state_directory_stops_with_exit_5_and_recovers(es, ship_dir, small_disk):
    write_lines(ship_dir / "app.log", [record(i) for i in range(20_000)])
    state = small_disk / "state"
    filler = small_disk / "filler"
    filler.write_bytes(b"\0" * (4 * 1024 * 1024 - 96 * 1024))  # a little room: the database starts, then fills
    argv = [
        "ship",
        str(ship_dir / "*.log"),
        "--es-url",
        es.url,
        "--state-dir",
        str(state),
        *FAST,
        "--batch-size",
        "50",
        "--once",
    ]
    code, out, err = run_ship(argv)
    assert code == 5, err
    assert f"disk full under {state}" in out + err
    assert "cannot rollback" not in err
    filler.unlink()  # space is back
    code, out, err = run_ship(argv)
    assert code == 0, err
    assert_exactly_once(es, 20_000)


# --- 11. unreadable files and state directories --------------------------------------------------------


def test_an_unreadable_file_is_a_warning_and_once_exits_5(es, ship_dir):
    write_lines(ship_dir / "ok.log", [record(i) for i in range(10)])
    write_lines(ship_dir / "secret.log", [record(i) for i in range(10, 20)])
    os.chmod(ship_dir / "secret.log", 0)
    result = run_restricted(args(es, ship_dir, "*.log", "--once"))
    assert result.returncode == 5, result.stderr[-2000:]
    assert "not read: " + str(ship_dir / "secret.log") in result.stdout
    warning = [orjson.loads(x) for x in result.stderr.splitlines() if '"file_unreadable"' in x]
    assert len(warning) == 1 and warning[0]["log.level"] == "warning"
    os.chmod(ship_dir / "secret.log", 0o644)
    code, out, err = run_ship(args(es, ship_dir, "*.log", "--once"))
    assert code == 0, err
    assert_exactly_once(es, 20)


def test_a_state_directory_that_cannot_be_entered_is_exit_5(es, ship_dir, tmp_path):
    write_lines(ship_dir / "ok.log", [record(0)])
    locked = tmp_path / "locked-state"
    locked.mkdir(mode=0)
    result = run_restricted(["ship", str(ship_dir / "*.log"), "--once", "--es-url", es.url, "--state-dir", str(locked)])
    assert result.returncode == 5, result.stderr
    assert f"state directory {locked} is not readable and writable" in result.stderr


# --- real logrotate, while a writer appends and Elasticsearch goes down and up -------------------------


def logrotate_conf(path: Path, mode: str) -> Path:
    conf = path.parent.parent / f"logrotate-{mode}.conf"
    conf.write_text(f"""{path} {{
    rotate 4
    {mode}
    compress
    delaycompress
    missingok
}}
""")
    return conf


@pytest.mark.parametrize("mode", ["create 0644", "copytruncate"])
def test_real_logrotate_during_outages(es, ship_dir, mode):
    if shutil.which("logrotate") is None:
        pytest.fail("logrotate is not installed: .ci/run installs Debian's logrotate")
    path = ship_dir / "app.log"
    conf = logrotate_conf(path, mode.split()[0])
    status = ship_dir.parent / "logrotate.status"
    lock = threading.Lock()
    fd = [os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)]
    written = [0]
    total = 12_000
    stop = threading.Event()

    def writer():
        while written[0] < total and not stop.is_set():
            with lock:
                end = min(total, written[0] + 25)
                os.write(fd[0], b"".join(record(i) for i in range(written[0], end)))
                written[0] = end
            time.sleep(0.003)

    thread = threading.Thread(target=writer, daemon=True)
    os.write(fd[0], record(0))
    written[0] = 1
    proc = ShipperProcess(args(es, ship_dir, "app.log*", "--batch-size", "300"))
    proc.event("file_opened")  # the shipper is up before anything rotates
    thread.start()
    try:
        for rotation in range(5):
            wait_until(lambda k=rotation: written[0] >= total * (k + 1) // 6, what="the writer's progress")
            outage = rotation in (1, 2, 3)
            if outage and rotation == 1:
                es.stop()
            with lock:  # logrotate, then the application reopens its file (create), as a postrotate would
                subprocess.run(["logrotate", "-f", "-s", str(status), str(conf)], check=True)
                if mode.startswith("create"):
                    os.close(fd[0])
                    fd[0] = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            if rotation == 3:
                es.start()
        thread.join(timeout=60)
        assert written[0] == total
        try:
            wait_docs(es, total, timeout=60)
        except AssertionError:
            lost, doubled = tally(es, total)
            raise AssertionError(f"{len(lost)} lost, {len(doubled)} doubled\n" + proc.stderr_text()[-3000:]) from None
        proc.signal(signal.SIGTERM)
        assert proc.wait() == 0
    finally:
        stop.set()
        proc.kill()
        os.close(fd[0])
        es.start() if not es.running else None
    assert any(p.name.endswith(".gz") for p in ship_dir.iterdir())  # compress ran, and .gz files were skipped
    assert_exactly_once(es, total)
