"""Several bulk requests in flight against the test cluster, as subprocesses: a cluster that
refuses beyond a limit, nodes that die and come back, preflight and check over several nodes."""

from __future__ import annotations

import signal

import pytest

from .fake_es import FakeElasticsearch
from .far_end import assert_exactly_once, wait_docs
from .shipper_proc import ShipperProcess, record, run_ship, ship_args, write_lines

pytestmark = pytest.mark.slow


def test_a_cluster_under_indexing_pressure_sees_the_shipper_back_off(es, ship_dir):
    """A cluster that answers 429 to any _bulk arriving while 3 are being handled: nothing
    lost or doubled, few requests refused, and the shipper's own count of 429s is true."""
    n = 12_000
    write_lines(ship_dir / "app.log", [record(i) for i in range(n)])
    es.max_concurrent_bulk = 3
    es.bulk_delay = 0.05  # each bulk takes a while: more requests in flight would help, up to 3
    code, out, err = run_ship(ship_args(es, ship_dir, "--once", "--batch-size", "100", "--max-in-flight", "32"))
    assert code == 0, err[-2000:]
    assert_exactly_once(es, n)
    assert es.max_bulk_active <= 3 and es.max_bulk_active >= 2  # it used the room there was
    refused = es.rejected_bulk
    assert refused == err.count('"retry_cause":"429"')  # each refusal seen, and retried
    assert refused <= 0.10 * (es.bulk_requests + refused), (refused, es.bulk_requests)


def test_a_dead_node_never_stops_shipping(ship_dir):
    """--es-url DEAD --es-url LIVE: the preflight asks the live one and warns of the dead one;
    then the live node is killed and the dead one comes back mid-run: every line once, exit 0."""
    first = FakeElasticsearch().start()
    second = FakeElasticsearch(node_of=first).start()
    first.stop()  # down at the start
    try:
        path = ship_dir / "app.log"
        write_lines(path, [record(i) for i in range(2000)])
        args = ship_args(first, ship_dir, "--es-url", second.url, "--batch-size", "200")
        proc = ShipperProcess(args)
        try:
            down = proc.event("elasticsearch_node_down")
            assert down["url.full"] == first.url
            proc.event("elasticsearch_reachable")  # the preflight asked the live node
            wait_docs(first, 2000)  # (one cluster: every node sees the same documents)
            second.stop()
            first.start()
            write_lines(path, [record(i) for i in range(2000, 5000)])
            wait_docs(first, 5000)
            assert first.bulk_requests > 0 and second.bulk_requests > 0  # both nodes took requests
            proc.signal(signal.SIGTERM)
            assert proc.wait() == 0
        finally:
            proc.kill()
        assert_exactly_once(first, 5000)
    finally:
        first.stop()
        second.stop()


def test_check_asks_any_live_node_and_names_the_dead_ones(ship_dir):
    live = FakeElasticsearch().start()
    dead = FakeElasticsearch()
    dead.start()
    dead.stop()
    try:
        code, out, err = run_ship(["check", "--es-url", dead.url, "--es-url", live.url])
        assert code == 0, out + err
        assert f"warn  node: {dead.url} is unreachable" in out
        assert f"ok    connection: {live.url} answers" in out
        code, out, _ = run_ship(["check", "--es-url", dead.url])  # no node answers: that is a failure
        assert code == 3 and "FAIL" in out and "is unreachable" in out
    finally:
        live.stop()
