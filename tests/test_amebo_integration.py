"""The real Amebo 0.9.6 (from PyPI), served by uvicorn through ``amebo_logging.amebo``.

One scenario, run once: applications, an action with a JSON schema, subscriptions to a
real subscriber service (200, 503, and 503-then-200 with Amebo's own retry); valid and
invalid publishes with and without ``X-Request-ID``, ``traceparent`` and
``X-Amebo-Trace-Id``; a query-string secret; probes.  Then the tests read Amebo's stdout:
every line a record, every catalog record counted against what really happened, one access
record per request, traces linked from the publish into the subscriber's own records, no
secret anywhere; and the output shipped with ``amebo-logship ship --once`` carries every
field the Kibana objects use.
"""

from __future__ import annotations

import sys
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import pytest

from .amebo_proc import free_port, records, serve, serve_subscriber, wait_until

pytestmark = pytest.mark.slow

ADMIN_KEY = "amebo_admin_test_key_5f1e2d3c4b5a69788796a5b4"
AMEBO_SECRET = "amebo-secret-value-0123456789abcdef"
SHOP_SECRET = "shop-secret-0123456789abcdef"
QUERY_SECRET = "query-secret-token-9f8e7d6c"
HOOK_SECRET = "hook-signature-secret-1a2b3c"
TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
BARE_TRACE = "0af7651916cd43dd8448eb211c80319c"
VALID, INVALID = 24, 6


class Scenario:
    """What the test did (the truth the records are counted against) and what came out."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self.amebo_out = base / "amebo.stdout"
        self.amebo_err = base / "amebo.stderr"
        self.sub_out = base / "subscriber.stdout"
        self.requests: list[tuple[str, str, int]] = []  # (method, path, status) of every request sent to Amebo
        self.published: list[dict[str, Any]] = []  # Amebo's answers to accepted publishes
        self.sent_ids: dict[str, str] = {}  # event id -> the X-Request-ID the publisher sent
        self.rejected = 0


@pytest.fixture(scope="module")
def scenario(tmp_path_factory) -> Scenario:
    base = tmp_path_factory.mktemp("amebo")
    sc = Scenario(base)
    amebo_port, sub_port = free_port(), free_port()
    subscriber = serve_subscriber(sub_port, sc.sub_out, base / "subscriber.stderr")
    workdir = base / "amebo-home"  # SQLite: ./amebo.db in the working directory
    workdir.mkdir()
    env = {
        "AMEBO_ADMIN_KEY": ADMIN_KEY,
        "AMEBO_SECRET": AMEBO_SECRET,
        "AMEBO_GRACE_SECONDS": "0",
        "AMEBO_LOG_LEVEL": "info",
        "AMEBO_LOG_FORMAT": "",
    }
    amebo = serve(
        [sys.executable, "-m", "amebo_logging.amebo", "--host", "127.0.0.1", "--port", str(amebo_port)],
        workdir,
        env,
        amebo_port,
        sc.amebo_out.open("wb"),
        sc.amebo_err.open("wb"),
        lambda: sc.amebo_err.read_text()[-2000:],
    )
    base_url = f"http://127.0.0.1:{amebo_port}"
    admin = {"X-Amebo-Admin-Key": ADMIN_KEY}
    try:
        with httpx.Client(base_url=base_url, timeout=30) as client:

            def call(method: str, path: str, expect: tuple[int, ...], **kw: Any) -> httpx.Response:
                r = client.request(method, path, **kw)
                sc.requests.append((method, path.split("?")[0], r.status_code))
                assert r.status_code in expect, (path, r.status_code, r.text)
                return r

            sub_url = f"http://127.0.0.1:{sub_port}"
            call(
                "POST",
                "/v1/applications",
                (200, 201),
                headers=admin,
                json={"application": "shop", "address": sub_url, "secret": SHOP_SECRET},
            )
            schema = {"type": "object", "properties": {"id": {"type": "integer"}}, "required": ["id"]}
            call(
                "POST",
                "/v1/actions",
                (200, 201),
                headers=admin,
                json={"action": "order.created", "application": "shop", "schemata": schema},
            )
            for handler, retries in ((f"/ok?token={HOOK_SECRET}", 1), ("/fail", 1), ("/flaky", 2)):
                call(
                    "POST",
                    "/v1/subscriptions",
                    (200, 201),
                    headers=admin,
                    json={"application": "shop", "action": "order.created", "handler": handler, "max_retries": retries},
                )
            for i in range(VALID + INVALID):
                headers = dict(admin)
                if i % 4 == 1:
                    headers["X-Request-ID"] = f"publisher-{i}"
                elif i % 4 == 2:
                    headers["traceparent"] = TRACEPARENT
                elif i % 4 == 3:
                    headers["X-Amebo-Trace-Id"] = BARE_TRACE
                valid = i < VALID
                r = call(
                    "POST",
                    "/v1/events",
                    (201,) if valid else (406,),
                    headers=headers,
                    json={
                        "action": "order.created",
                        "deduper": f"order-{i}",
                        "payload": {"id": i} if valid else {"id": f"not-a-number-{i}"},
                    },
                )
                if valid:
                    sc.published.append(r.json())
                    if "X-Request-ID" in headers:
                        sc.sent_ids[r.json()["event"]] = headers["X-Request-ID"]
                else:
                    sc.rejected += 1
            call("GET", f"/v1/actions?access_token={QUERY_SECRET}", (200,), headers=admin)
            for probe in ("/health", "/readyz", "/metrics"):
                call("GET", probe, (200, 503))
            # every delivery attempt: 200s, 503s, and the flaky ones retried by Amebo ~10 s later
            expected = VALID * 4
            wait_until(
                lambda: (
                    sum(r.get("message") == "order_received" for r in records(sc.sub_out)) >= expected
                    and sum(r.get("message", "").startswith("webhook_") for r in records(sc.amebo_out)) >= expected
                ),
                90,
                "every delivery attempt",
            )
            sc.events_in_ledger = len(call("GET", "/v1/events?pagination=1000", (200,), headers=admin).json())
    finally:
        for proc in (amebo, subscriber):
            proc.terminate()
            proc.wait(timeout=30)
    sc.amebo = records(sc.amebo_out)
    sc.subscriber = records(sc.sub_out)
    return sc


def by(recs: list[dict[str, Any]], message: str) -> list[dict[str, Any]]:
    return [r for r in recs if r.get("message") == message]


def test_every_line_is_a_record_and_nothing_goes_to_stderr(scenario):
    lines = scenario.amebo_out.read_bytes().splitlines()
    assert len(lines) == len(scenario.amebo) > 100
    assert all(line.startswith(b'{"@timestamp":"') for line in lines)
    assert scenario.amebo_err.read_text() == ""
    heaven = [r["message"] for r in scenario.amebo if r["log.logger"] == "heaven"]
    assert "(1): connect" in heaven and "(X): starting daemon: aproko" in heaven  # heaven's print()s


def test_catalog_counts_equal_what_happened(scenario):
    recs = scenario.amebo
    # every event in Amebo's ledger was published once: ours, and the dead letters Amebo published
    assert len(by(recs, "event_published")) == scenario.events_in_ledger == VALID + VALID  # 24 of /fail died
    ours = {p["event"] for p in scenario.published}
    assert {r["amebo.event_id"] for r in by(recs, "event_published") if r["amebo.action"] == "order.created"} == ours
    assert len(by(recs, "schema_validation_failed")) == scenario.rejected == INVALID
    answered = Counter(r["answered"] for r in scenario.subscriber if r["message"] == "order_received")
    assert len(by(recs, "webhook_delivered")) == answered[200] == VALID * 2  # /ok, and /flaky's second attempt
    assert len(by(recs, "webhook_failed")) == answered[503] == VALID * 2  # /fail, and /flaky's first attempt


def test_catalog_records_carry_their_fields(scenario):
    from amebo_logging import schema

    for rec in scenario.amebo:  # each catalog event on the logger the schema (and the demo) gives it
        if rec["message"] in schema.EVENTS:
            assert rec["log.logger"] == schema.EVENTS[rec["message"]].logger, rec
    published = by(scenario.amebo, "event_published")[0]
    assert published["amebo.application"] == "shop" and published["amebo.payload_size"] == len(b'{"id":0}')
    invalid = by(scenario.amebo, "schema_validation_failed")[0]
    assert invalid["log.level"] == "warning" and invalid["amebo.application"] == "shop"
    assert invalid["amebo.validation_errors"] == ["$.id: type integer"]  # where and why, never the value
    for rec in by(scenario.amebo, "webhook_delivered") + by(scenario.amebo, "webhook_failed"):
        assert {
            "amebo.event_id",
            "amebo.subscription",
            "amebo.action",
            "url.full",
            "event.duration",
            "amebo.attempt",
            "amebo.max_retries",
        } <= rec.keys()
        assert "?" not in rec["url.full"] and rec["url.full"].startswith("http://127.0.0.1:")
    failed = by(scenario.amebo, "webhook_failed")
    first_flaky = [r for r in failed if r["url.full"].endswith("/flaky")]
    assert all(
        r["log.level"] == "warning" and r["amebo.attempt"] == 1 and r["amebo.max_retries"] == 2 for r in first_flaky
    )
    last_fail = [r for r in failed if r["url.full"].endswith("/fail")]
    assert all(r["log.level"] == "error" and r["http.response.status_code"] == 503 for r in last_fail)
    assert all(r["error.type"] and r["error.message"] for r in failed)


def test_one_access_record_per_request(scenario):
    access = [r for r in scenario.amebo if r["message"] == "http_request"]
    probes = {"/health", "/readyz", "/metrics"}
    sent = [(m, p, s) for m, p, s in scenario.requests if p not in probes]  # probes log at debug
    assert sorted((r["http.request.method"], r["url.path"], r["http.response.status_code"]) for r in access) == sorted(
        sent
    )
    assert not [r for r in scenario.amebo if r["log.logger"] == "uvicorn.access"]
    assert {r["log.logger"] for r in access} == {"amebo.access"}
    import ipaddress

    for r in access:
        ipaddress.ip_address(r["client.ip"])


def test_a_publish_and_its_deliveries_share_a_trace_into_the_subscriber(scenario):
    recs = scenario.amebo
    published = {r["amebo.event_id"]: r for r in by(recs, "event_published")}
    answers = {p["event"]: p for p in scenario.published}
    for event_id, answer in answers.items():
        trace = published[event_id]["trace.id"]
        assert answer["trace_id"] == trace  # Amebo stored the trace the record carries
    traces = {published[e]["trace.id"] for e in answers}
    assert TRACEPARENT.split("-")[1] in traces and BARE_TRACE in traces
    deliveries = by(recs, "webhook_delivered") + by(recs, "webhook_failed")
    for d in deliveries:
        assert d["trace.id"] == published[d["amebo.event_id"]]["trace.id"]
    received = [r for r in scenario.subscriber if r["message"] == "order_received"]
    assert len(received) == len(deliveries) == VALID * 4
    for r in received:
        # the subscriber's own records: the event's trace, with the delivery's span as parent
        span = r["received_traceparent"].split("-")[2]
        [source] = [d for d in deliveries if d["span.id"] == span]
        assert (source["amebo.event_id"], source["amebo.attempt"]) == (r["event_id"], r["attempt"])
        assert r["trace.id"] == source["trace.id"] and r["parent.id"] == span
        assert r["correlation_id"] == r["received_request_id"] == source["correlation_id"]
        assert r["service.name"] == "billing" and r["service.version"] != "0.9.6"
    # the publisher's own request id is on the publish's records
    for event_id, rid in scenario.sent_ids.items():
        assert published[event_id]["correlation_id"] == rid


def test_no_secret_anywhere(scenario):
    text = scenario.amebo_out.read_text() + scenario.amebo_err.read_text() + scenario.sub_out.read_text()
    for secret in (ADMIN_KEY, AMEBO_SECRET, SHOP_SECRET, QUERY_SECRET, HOOK_SECRET, "amebo_admin_"):
        assert secret not in text, secret


def test_shipped_documents_carry_every_field_the_kibana_objects_use(scenario, tmp_path):
    from amebo_logging.ship.elastic_setup import apply

    from .fake_es import FakeElasticsearch
    from .saved_objects import fields_used, ndjson_objects, on_failures_view
    from .shipper_proc import run_ship

    with FakeElasticsearch() as es:
        from elasticsearch import Elasticsearch

        apply(Elasticsearch(es.url), "90d", report=lambda change: None)
        code, out, err = run_ship(
            ["ship", str(scenario.amebo_out), "--once", "--es-url", es.url, "--state-dir", str(tmp_path / "state")]
        )
        assert code == 0 and "0 dead-lettered" in out and "failure store" not in out, out + err
        docs = es.docs("logs-amebo-default")
        # every value fits its field: nothing in the failure store, no ignored field
        assert es.docs("logs-amebo-default::failures") == []
        assert not any(index.ignored for index in es.store.resolve("logs-amebo-default"))
    assert len(docs) == len(scenario.amebo)
    present = set().union(*(d.keys() for d in docs))
    used = fields_used([o for o in ndjson_objects() if not on_failures_view(o)]) - {"_ignored"}
    assert used and used <= present, used - present
