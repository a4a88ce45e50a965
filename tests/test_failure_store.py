"""Nothing refused goes unseen: the failure store (Elasticsearch 8.19, 9.1+; on by default for
new logs-*-* data streams from 9.2) and ignore_malformed's ``_ignored``, end to end.

Every line is numbered; the far end is counted: what is indexed, what is in the data stream's
``::failures`` indices, what has ignored fields, what is dead-lettered on the host.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime

import httpx
import orjson
import pytest

from .fake_es import FakeElasticsearch
from .shipper_proc import ShipperProcess, record, run_ship, ship_args, write_lines

pytestmark = pytest.mark.slow

N = 200
#: Lines whose "ctx" is text where the first line made it an object: no ignore_malformed
#: covers that, so Elasticsearch cannot index them.
UNINDEXABLE = set(range(7, N, 10))
#: Lines whose "n" is text where the first line made it a long: kept, not indexed (_ignored).
MALFORMED = set(range(3, N, 20))


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def lines() -> list[bytes]:
    out = []
    for i in range(N):
        fields: dict = {"@timestamp": now(), "n": "many" if i in MALFORMED else i}
        fields["ctx"] = "flat text" if i in UNINDEXABLE else {"k": i}
        out.append(record(i, **fields))
    return out


def ship_once(es, ship_dir, *extra):
    return run_ship(ship_args(es, ship_dir, "--once", *extra))


def search(es, target, query=None):
    body = {"query": query} if query else {}
    return httpx.post(f"{es.url}/{target}/_search?size=1000", json=body).json()["hits"]["hits"]


def test_92_keeps_what_it_cannot_index_and_the_shipper_summary_status_and_check_say_so(ship_dir):
    with FakeElasticsearch(version="9.2.0") as es:  # no setup: the stack's logs template, as 9.2 ships it
        write_lines(ship_dir / "app.log", lines())
        code, out, err = ship_once(es, ship_dir)
        assert code == 0, err
        kept = len(UNINDEXABLE)
        assert f"delivered {N - kept} documents " in out and f"{kept} kept in the failure store" in out, out
        assert "0 dead-lettered" in out
        assert "FROM logs-amebo-default::failures" in out
        # the far end: every line exactly once, indexed or in the failure store
        indexed = {h["_source"]["seq"] for h in search(es, "logs-amebo-default")}
        failed = search(es, "logs-amebo-default::failures")
        assert indexed == set(range(N)) - UNINDEXABLE
        assert sorted(f["_source"]["document"]["source"]["seq"] for f in failed) == sorted(UNINDEXABLE)
        assert {f["_source"]["document"]["index"] for f in failed} == {"logs-amebo-default"}
        ignored = search(es, "logs-amebo-default", {"exists": {"field": "_ignored"}})
        assert {h["_source"]["seq"]: h["_ignored"] for h in ignored} == {i: ["n"] for i in MALFORMED}
        # one record per batch: how many, the first one's file and offset, and the query that shows why
        records = [orjson.loads(x) for x in err.splitlines() if x.startswith("{")]
        told = [r for r in records if r["message"] == "documents_in_failure_store"]
        assert told and sum(r["documents"] for r in told) == kept
        ids = {f["_source"]["document"]["id"] for f in failed}
        for r in told:
            assert r["log.level"] == "warning" and r["log.file.path"] == str(ship_dir / "app.log")
            assert r["query"].startswith("FROM logs-amebo-default::failures | WHERE document.id == ")
            assert r["query"].split('"')[1] in ids
        # status: the totals since the state was created
        code, out, _ = run_ship(["status", "--state-dir", str(ship_dir.parent / "state"), "--json"])
        totals = orjson.loads(out)["totals"]
        assert (totals["delivered"], totals["failure_store"], totals["dead_lettered"]) == (N - kept, kept, 0)
        assert totals["last_failure_store"] is not None
        # check: the last day's failure store and ignored fields, as warnings (exit 0)
        code, out, _ = run_ship(["check", "--es-url", es.url])
        assert code == 0, out
        assert f"warn  failure store: {kept} documents of the last day could not be indexed" in out
        assert f"warn  ignored fields: {len(MALFORMED)} documents of the last day" in out
        # a replay (state lost) writes nothing twice into the data stream; Elasticsearch keeps
        # another failure-store copy of each unindexable line (its ids are its own): documented
        run_ship(["reset-state", "--state-dir", str(ship_dir.parent / "state"), "--yes"])
        code, out, err = ship_once(es, ship_dir)
        assert code == 0 and f"{N - kept} already there" in out, out
        assert len(search(es, "logs-amebo-default")) == N - kept
        assert len(search(es, "logs-amebo-default::failures")) == 2 * kept


def test_91_without_setup_refuses_then_setup_turns_the_failure_store_on(ship_dir):
    with FakeElasticsearch(version="9.1.0") as es:  # 9.1: has a failure store, off unless asked for
        write_lines(
            ship_dir / "app.log",
            [record(0, ctx={"k": 0}, **{"@timestamp": now()}), record(1, ctx="text", **{"@timestamp": now()})],
        )
        dead = ship_dir.parent / "dead.ndjson"
        code, out, _ = ship_once(es, ship_dir, "--dead-letter", str(dead))
        assert code == 0 and "1 dead-lettered" in out and "failure store" not in out, out
        [entry] = [orjson.loads(x) for x in dead.read_bytes().splitlines()]
        assert entry["error"]["failure_store"] == "not_enabled" and orjson.loads(entry["line"])["seq"] == 1
        code, out, err = run_ship(["setup", "--es-url", es.url])
        assert code == 0, err
        assert "enabled    failure store of data stream logs-amebo-default" in out
        assert "failure store: on for logs-amebo-*" in out
        assert es.store.failure_store["logs-amebo-default"] is True
        write_lines(ship_dir / "app.log", [record(2, ctx="text", **{"@timestamp": now()})])
        code, out, _ = ship_once(es, ship_dir, "--dead-letter", str(dead))
        assert code == 0 and "1 kept in the failure store" in out and "0 dead-lettered" in out, out
        code, out, _ = run_ship(["setup", "--es-url", es.url])  # idempotent
        assert "failure store of data stream" not in out


def test_92_no_failure_store_keeps_refusals_on_the_host(ship_dir):
    with FakeElasticsearch(version="9.2.0") as es:
        code, out, err = run_ship(["setup", "--es-url", es.url, "--no-failure-store"])
        assert code == 0 and "failure store: off for logs-amebo-*" in out, out + err
        write_lines(
            ship_dir / "app.log",
            [record(0, ctx={"k": 0}, **{"@timestamp": now()}), record(1, ctx="text", **{"@timestamp": now()})],
        )
        code, out, _ = ship_once(es, ship_dir)
        assert code == 0 and "1 dead-lettered" in out and "kept in the failure store" not in out, out
        code, out, _ = run_ship(["check", "--es-url", es.url])
        assert "ok    failure store: off for logs-amebo-default" in out, out


def test_90_has_no_failure_store_and_setup_says_so(ship_dir):
    with FakeElasticsearch(version="9.0.0") as es:
        code, out, err = run_ship(["setup", "--es-url", es.url])
        assert code == 0, err  # no data_stream_options sent: 9.0 would refuse the template
        assert "failure store: Elasticsearch 9.0.0 has none" in out
        assert "data_stream_options" not in es.store.component_templates["amebo-logs@settings"]["template"]


def test_metrics_and_health_report_the_failure_store(ship_dir):
    with FakeElasticsearch(version="9.2.0") as es:
        proc = ShipperProcess(ship_args(es, ship_dir, "--metrics-addr", "127.0.0.1:0", "--wait-for-files"))
        try:
            base = f"http://127.0.0.1:{proc.event('monitor_listening')['port']}"
            write_lines(ship_dir / "app.log", [record(i, **{"@timestamp": now(), "ctx": {"k": i}}) for i in range(50)])
            deadline = time.monotonic() + 30
            while httpx.get(base + "/health").json().get("delivered") != 50:
                assert time.monotonic() < deadline, "50 delivered"
                time.sleep(0.05)
            assert httpx.get(base + "/health").json()["status"] == "ok"
            write_lines(ship_dir / "app.log", [record(50, **{"@timestamp": now(), "ctx": "text"})])
            proc.event("documents_in_failure_store")
            while httpx.get(base + "/health").json().get("failure_store") != 1:
                assert time.monotonic() < deadline, "1 in the failure store"
                time.sleep(0.05)
            r = httpx.get(base + "/health")
            # 1 of 51 documents in the last 5 minutes (2%) is over the 1% default: degraded, still 200
            assert r.status_code == 200 and r.json()["status"] == "degraded", r.json()
            assert "went to the failure store" in r.json()["reason"] and r.json()["failure_store"] == 1
            metrics = httpx.get(base + "/metrics").text
            assert "amebo_logship_failure_store_total 1.0" in metrics
            assert "amebo_logship_documents_delivered_total 50.0" in metrics
        finally:
            proc.signal()
            assert proc.wait() == 0
