"""The demo writes what the real integration writes: the catalog's loggers, fields and trace links
(``tests/test_amebo_integration.py`` holds the real Amebo to the same catalog)."""

from __future__ import annotations

from collections import defaultdict

from amebo_logging import demo, schema

CONTEXT = ("correlation_id", "trace.id", "span.id")


def test_every_demo_record_is_a_catalog_event_on_its_logger_with_its_fields(logfile, monkeypatch):
    monkeypatch.setenv("AMEBO_LOG_FILE", str(logfile.path))
    monkeypatch.setenv("AMEBO_LOG_FORMAT", "json")
    demo.run(count=200, seed=3)
    records = logfile.records()
    seen = defaultdict(int)
    for r in records:
        event = schema.EVENTS[r["message"]]
        seen[event.name] += 1
        assert r["log.logger"] == event.logger, r
        assert set(r) <= {*schema.ALWAYS_PRESENT, *CONTEXT, *event.fields}, set(r) - set(event.fields)
        assert set(schema.ALWAYS_PRESENT) <= set(r)
        assert r["log.level"] == (
            "error" if event.name == "webhook_failed" and r["amebo.attempt"] == r["amebo.max_retries"] else event.level
        )
    assert set(seen) == set(schema.EVENTS)  # every event of the catalog is shown


def test_deliveries_share_their_event_s_trace_each_on_a_span_and_correlation_id_of_its_own(logfile, monkeypatch):
    monkeypatch.setenv("AMEBO_LOG_FILE", str(logfile.path))
    demo.run(count=100, seed=5)
    records = logfile.records()
    published = {r["amebo.event_id"]: r for r in records if r["message"] == "event_published"}
    requests = {r["correlation_id"]: r for r in records if r["message"] == "http_request"}
    deliveries = [r for r in records if r["message"].startswith("webhook_")]
    assert published and deliveries
    for event in published.values():  # the publish and its request: one correlation id, one span
        request = requests[event["correlation_id"]]
        assert (request["trace.id"], request["span.id"]) == (event["trace.id"], event["span.id"])
        assert request["http.response.status_code"] == 201
    spans, ids = set(), set()
    for d in deliveries:
        event = published[d["amebo.event_id"]]
        assert d["trace.id"] == event["trace.id"] and d["span.id"] != event["span.id"]
        assert d["correlation_id"] != event["correlation_id"]
        spans.add(d["span.id"])
        ids.add(d["correlation_id"])
    assert len(spans) == len(ids) == len(deliveries)  # each attempt is its own span and correlation id
    rejected = [r for r in records if r["message"] == "schema_validation_failed"]
    assert rejected and all(requests[r["correlation_id"]]["http.response.status_code"] == 406 for r in rejected)
