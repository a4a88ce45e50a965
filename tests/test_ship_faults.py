"""Faults: Elasticsearch down, 429 and 503 storms, per-item rejections, kill -9, SIGTERM, memory."""

from __future__ import annotations

import queue
import random
import signal
import threading
import time

import psutil
import pytest

from amebo_logging import get_logger
from amebo_logging.ship.senders import SenderPool

from .far_end import TARGET, assert_exactly_once, wait_docs
from .shipper_proc import ShipperProcess, record, run_ship, ship_args, write_lines

pytestmark = pytest.mark.slow


def test_elasticsearch_down_at_start(es, ship_dir):
    write_lines(ship_dir / "app.log", [record(i) for i in range(3000)])
    es.stop()
    proc = ShipperProcess(ship_args(es, ship_dir, "--once", "--batch-size", "500"))
    try:
        proc.event("elasticsearch_unreachable")
        proc.wait_for(lambda r: r.get("message") == "bulk_request_failed" and r["retry_cause"] == "connection")
        es.start()
        assert proc.wait() == 0
    finally:
        proc.kill()
    assert_exactly_once(es, 3000)


def test_elasticsearch_down_mid_ship(es, ship_dir):
    path = ship_dir / "app.log"
    write_lines(path, [record(i) for i in range(1000)])
    proc = ShipperProcess(ship_args(es, ship_dir, "--batch-size", "200"))
    try:
        wait_docs(es, 1000)
        es.stop()
        write_lines(path, [record(i) for i in range(1000, 2000)])
        proc.wait_for(lambda r: r.get("message") == "bulk_request_failed")
        es.start()
        wait_docs(es, 2000)
        proc.signal(signal.SIGTERM)
        assert proc.wait() == 0
    finally:
        proc.kill()
    assert_exactly_once(es, 2000)
    # the follow-mode log says when shipping waits, why, and when Elasticsearch answers again
    said = [r for r in proc.records if r.get("message", "").startswith("elasticsearch_")]
    waits = [r for r in said if r["message"] == "elasticsearch_waiting"]
    assert waits and "Connection refused" in waits[0]["reason"] and waits[0]["log.level"] == "warning"
    answering = [r for r in said if r["message"] == "elasticsearch_answering"]
    assert answering and said.index(answering[-1]) > said.index(waits[-1]) and answering[-1]["waited_seconds"] > 0


def test_429_and_503_storms_on_whole_requests(es, ship_dir):
    write_lines(ship_dir / "app.log", [record(i) for i in range(2000)])
    es.fail_requests(*([429] * 6 + [503] * 4 + [502, 500]))
    code, out, err = run_ship(ship_args(es, ship_dir, "--once", "--batch-size", "250"))
    assert code == 0, err
    assert_exactly_once(es, 2000)
    assert not es.faults.request_failures  # every injected failure was met and retried
    assert err.count('"retry_cause":"429"') == 6 and err.count('"retry_cause":"5xx"') == 6


def test_per_item_429s_and_503s_are_retried_alone(es, ship_dir):
    write_lines(ship_dir / "app.log", [record(i) for i in range(2000)])
    rng = random.Random(4)
    rejected: dict[str, int] = {}

    def rule(doc_id, doc):  # a third of the items are refused once or twice before they pass
        if doc_id not in rejected:
            rejected[doc_id] = rng.choice((0, 0, 1, 2))
        if rejected[doc_id] > 0:
            rejected[doc_id] -= 1
            return rng.choice((429, 503))
        return None

    es.fail_items(rule)
    code, out, err = run_ship(ship_args(es, ship_dir, "--once", "--batch-size", "400"))
    assert code == 0, err
    assert "delivered 2000 documents" in out and "0 dead-lettered" in out
    assert_exactly_once(es, 2000)
    assert all(left == 0 for left in rejected.values())


def test_mixed_failures_dead_letter_holds_exactly_the_permanent_ones(es, ship_dir):
    import orjson

    es.store.index_templates["amebo"] = {
        "index_patterns": ["logs-amebo-*"],
        "priority": 200,
        "data_stream": {},
        "template": {"mappings": {"properties": {"payload_size": {"type": "long"}}}},
    }
    bad = {i for i in range(1500) if i % 97 == 3}
    write_lines(ship_dir / "app.log", [record(i, payload_size="x" if i in bad else i) for i in range(1500)])
    seen: set[str] = set()

    def rule(doc_id, doc):
        if doc_id in seen:
            return None
        seen.add(doc_id)
        return 429 if int(doc_id.rsplit("-", 1)[1]) % 3 == 0 else None

    es.fail_items(rule)
    es.fail_requests(503, 429)
    dead = ship_dir.parent / "dead.ndjson"
    code, out, err = run_ship(ship_args(es, ship_dir, "--once", "--dead-letter", str(dead)))
    assert code == 0, err
    entries = [orjson.loads(x) for x in dead.read_bytes().splitlines()]
    assert sorted(orjson.loads(e["line"])["seq"] for e in entries) == sorted(bad)
    assert sorted(d["seq"] for d in es.docs(TARGET)) == [i for i in range(1500) if i not in bad]


def test_kill_9_at_random_moments_then_every_line_exactly_once(es, ship_dir):
    """Several requests in flight, answered out of order (each after a random delay, its
    documents already indexed), and kill -9 at random moments: every line once at the end."""
    n = 60_000
    write_lines(ship_dir / "app.log", [record(i, payload_size=i * 7) for i in range(n)])
    rng = random.Random(20261127)
    delays = random.Random(7)
    es.bulk_delay = lambda: delays.uniform(0, 0.03)
    kills = 0
    deadline = time.monotonic() + 150
    while True:
        assert time.monotonic() < deadline, "did not finish in time"
        before = es.bulk_requests
        proc = ShipperProcess(ship_args(es, ship_dir, "--once", "--batch-size", str(rng.choice((500, 1000, 2000)))))
        try:
            if kills < 6:
                target = before + rng.randint(1, 6)  # a random moment: after a random number of requests
                while es.bulk_requests < target and proc.proc.poll() is None:
                    time.sleep(0.005)
                if rng.random() < 0.5:
                    time.sleep(rng.uniform(0, 0.05))  # and sometimes in the middle of one
                if proc.proc.poll() is None:
                    proc.signal(signal.SIGKILL)
                    proc.wait()
                    kills += 1
                    continue
            assert proc.wait(timeout=120) == 0, proc.stderr_text()[-2000:]
            break
        finally:
            proc.kill()
    assert kills >= 3 and es.max_bulk_active > 1  # several requests were in flight at once
    assert_exactly_once(es, n)


def test_sigterm_delivers_what_is_in_flight_then_exits_0(es, ship_dir):
    # (reading runs ahead of sending by up to --max-in-flight batches, 16 of 1,000 here, and
    # reads 4 MiB at a time: a file of several times that, so that the stop comes mid-way)
    write_lines(ship_dir / "app.log", [record(i) for i in range(100_000)])
    es.faults.delay = 0.05  # slow enough to stop it mid-way
    proc = ShipperProcess(ship_args(es, ship_dir, "--batch-size", "1000", "--max-in-flight", "16"))
    try:
        while es.bulk_requests < 2:
            time.sleep(0.005)
        proc.signal(signal.SIGINT)
        assert proc.wait(timeout=60) == 0
        stopped = proc.event("shipping_stopped")
        assert stopped["unsettled"] == 0
    finally:
        proc.kill()
    delivered = len(es.docs(TARGET))
    assert 0 < delivered < 100_000
    es.faults.delay = 0
    code, out, err = run_ship(ship_args(es, ship_dir, "--once"))
    assert code == 0, err
    assert (
        f"delivered {100_000 - delivered} documents" in out and "0 already there" in out
    )  # resumed exactly where it stopped
    assert_exactly_once(es, 100_000)


def test_the_loops_timed_wait_ends_though_a_signal_handler_outlasts_it():
    """What lets an idle follower see its SIGTERM: the loop waits for reports with a timeout,
    and a signal that comes during the wait must not turn it into a wait for ever.  (CPython
    3.11's SimpleQueue did, when the handler outlasted what was left of the wait: a follower
    with nothing in flight then slept through SIGTERM until killed.)"""
    reports = SenderPool(0, lambda report: None, threading.Event(), get_logger("test")).reports
    watchdog = threading.Timer(5.0, reports.put, ("the wait did not end by itself",))
    watchdog.start()

    def slow_handler(_signum, _frame):
        until = time.monotonic() + 0.2  # longer than what is left of the wait
        while time.monotonic() < until:
            pass

    previous = signal.signal(signal.SIGALRM, slow_handler)
    try:
        signal.setitimer(signal.ITIMER_REAL, 0.01)
        started = time.monotonic()
        with pytest.raises(queue.Empty):
            reports.get(timeout=0.05)
        assert time.monotonic() - started < 2
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
        watchdog.cancel()


def test_shutdown_timeout_bounds_the_stop_during_an_outage(es, ship_dir):
    write_lines(ship_dir / "app.log", [record(i) for i in range(500)])
    es.stop()
    proc = ShipperProcess(ship_args(es, ship_dir, "--shutdown-timeout", "0.5"))
    try:
        proc.wait_for(lambda r: r.get("message") == "bulk_request_failed")
        started = time.monotonic()
        proc.signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
        assert time.monotonic() - started < 10
        # nothing could be delivered: it stopped at once, or (when the signal came before the
        # loop had applied the first failure) after the 0.5 s timeout; either way nothing is lost
        ended = proc.wait_for(lambda r: r.get("message") in ("documents_unsettled", "shutdown_timeout_reached"))
        assert ended["unsettled_documents"] == 500
    finally:
        proc.kill()
    es.start()
    code, out, _ = run_ship(ship_args(es, ship_dir, "--once"))
    assert code == 0 and "delivered 500 documents" in out
    assert_exactly_once(es, 500)


def test_a_second_signal_stops_at_once_and_the_shutdown_timeout_bounds_the_first(es, ship_dir):
    """A cluster that holds every bulk: the first SIGTERM waits for what is in flight, a second
    stops at once; alone, the first stops when --shutdown-timeout is out.  Nothing is lost."""
    write_lines(ship_dir / "app.log", [record(i) for i in range(2000)])
    release = threading.Event()
    es.bulk_delay = lambda: release.wait(60) and 0.0  # each bulk held until released (bounded)
    try:
        for twice, timeout, ended in ((True, "30", "documents_unsettled"), (False, "1", "shutdown_timeout_reached")):
            held = es.bulk_active  # (the requests of the run before are held still)
            proc = ShipperProcess(ship_args(es, ship_dir, "--batch-size", "500", "--shutdown-timeout", timeout))
            try:
                deadline = time.monotonic() + 30
                while es.bulk_active <= held:
                    assert time.monotonic() < deadline and proc.proc.poll() is None, proc.stderr_text()[-2000:]
                    time.sleep(0.005)
                started = time.monotonic()
                proc.signal(signal.SIGTERM)
                proc.event("stop_requested")
                if twice:
                    proc.signal(signal.SIGTERM)
                    proc.event("stop_now_requested")
                assert proc.wait(timeout=30) == 0
                took = time.monotonic() - started
                assert took < 15, took  # not the 30 s timeout, not the held requests
                assert twice or took >= 1.0, took  # alone, it waited out the timeout
                assert proc.event(ended)["unsettled_documents"] > 0
            finally:
                proc.kill()
    finally:
        release.set()
        es.bulk_delay = 0
    code, out, err = run_ship(ship_args(es, ship_dir, "--once"))
    assert code == 0, err[-2000:]
    assert_exactly_once(es, 2000)


def test_memory_stays_bounded_during_a_long_outage(es, ship_dir):
    """200 MB of lines while Elasticsearch is down: reading pauses at the in-flight limit."""
    path = ship_dir / "big.log"
    line = record(0, padding="p" * 900)
    with open(path, "wb") as f:
        chunk = line * 10_000
        for _ in range(20):
            f.write(chunk)
    es.stop()
    proc = ShipperProcess(
        ship_args(es, ship_dir, "--batch-bytes", str(1 << 20), "--backoff-max", "0.05", "--shutdown-timeout", "0.5")
    )
    try:
        ps = psutil.Process(proc.proc.pid)
        peak = 0
        for n in range(1, 41):  # many retries into the outage, sampling memory after each
            proc.wait_count("bulk_request_failed", n)
            peak = max(peak, ps.memory_info().rss)
        assert peak < 120 * 1024 * 1024, f"peak RSS {peak / 1e6:.0f} MB while 200 MB waited"
        proc.signal()
        assert proc.wait(timeout=60) == 0
    finally:
        proc.kill()
        es.start()
