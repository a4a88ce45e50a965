"""The JSON records the structlog path writes: shape, fields, levels, exceptions, context."""

from __future__ import annotations

import logging
import os
import re
from datetime import UTC, datetime

import pytest
import structlog

from amebo_logging import (
    bind_context,
    correlation_scope,
    events,
    get_logger,
    schema,
    set_correlation_id,
    set_trace_context,
    unbind_context,
)

TIMESTAMP = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z")


def test_golden_event_published(logfile):
    logfile.configure(service_version="0.9.6", environment="staging")
    set_correlation_id("4bf92f3577b34da6a3ce929d0e0e4736")
    get_logger("amebo.gists").info("event_published", action="user.created", payload_size=123)

    record = logfile.one()
    assert TIMESTAMP.fullmatch(record.pop("@timestamp"))
    assert record == {
        "log.level": "info",
        "message": "event_published",
        "ecs.version": schema.ECS_VERSION,
        "log.logger": "amebo.gists",
        "service.name": "amebo",
        "service.version": "0.9.6",
        "service.environment": "staging",
        "process.pid": os.getpid(),
        "correlation_id": "4bf92f3577b34da6a3ce929d0e0e4736",
        "action": "user.created",
        "payload_size": 123,
    }


def test_the_first_keys_are_the_ecs_header_in_order(logfile):
    logfile.configure()
    get_logger("x").warning("something", a=1)
    line = logfile.lines()[0]
    assert line.startswith(b'{"@timestamp":"')
    assert list(logfile.one())[:3] == ["@timestamp", "log.level", "message"]


def test_timestamp_is_utc_now_with_microseconds(logfile):
    logfile.configure()
    before = datetime.now(UTC)
    get_logger("x").info("tick")
    after = datetime.now(UTC)
    stamp = datetime.strptime(logfile.one()["@timestamp"], "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)
    assert before.replace(microsecond=0) <= stamp <= after


def test_levels_below_the_threshold_are_not_written(logfile):
    logfile.configure(level="warning")
    log = get_logger("x")
    log.debug("d")
    log.info("i")
    log.warning("w")
    log.error("e")
    log.critical("c")
    log.log(logging.INFO, "i2")
    log.log("error", "e2")
    assert [(r["log.level"], r["message"]) for r in logfile.records()] == [
        ("warning", "w"),
        ("error", "e"),
        ("critical", "c"),
        ("error", "e2"),
    ]
    assert not log.is_enabled_for(logging.INFO) and log.is_enabled_for(logging.WARNING)


def test_a_logger_made_before_configuration_follows_it(logfile):
    early = get_logger("amebo.early")
    logfile.configure(level="debug")
    early.debug("late_configured")
    assert logfile.one()["log.logger"] == "amebo.early"


def test_default_logger_name_is_the_calling_module(logfile):
    logfile.configure()
    get_logger().info("hi")
    assert logfile.one()["log.logger"] == __name__


def test_structlog_get_logger_gives_the_same_records(logfile):
    logfile.configure()
    structlog.get_logger("amebo.via_structlog").info("hello", n=1)
    record = logfile.one()
    assert record["log.logger"] == "amebo.via_structlog"
    assert record["message"] == "hello" and record["n"] == 1


def test_percent_args_format_the_message(logfile):
    logfile.configure()
    get_logger("x").info("published %s of %d", "evt", 3)
    get_logger("x").info("broken %d", "not a number")
    first, second = logfile.records()
    assert first["message"] == "published evt of 3"
    assert second["message"].startswith("broken %d")


def test_bind_unbind_and_context(logfile):
    logfile.configure()
    log = get_logger("x").bind(subscription="sub_1")
    with correlation_scope("req-1") as cid:
        assert cid == "req-1"
        bind_context(application="billing")
        log.info("one")
        unbind_context("application")
        log.unbind("subscription").info("two")
    log.info("three")
    one, two, three = logfile.records()
    assert one["correlation_id"] == "req-1" and one["application"] == "billing" and one["subscription"] == "sub_1"
    assert two["correlation_id"] == "req-1" and "application" not in two and "subscription" not in two
    assert "correlation_id" not in three and three["subscription"] == "sub_1"


def test_trace_context_fields(logfile):
    logfile.configure()
    set_trace_context("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
    get_logger("x").info("traced")
    set_trace_context(None)
    get_logger("x").info("untraced")
    set_trace_context("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", new_span=False)
    get_logger("x").info("own span")
    traced, untraced, own = logfile.records()
    assert traced["trace.id"] == "4bf92f3577b34da6a3ce929d0e0e4736"
    assert traced["parent.id"] == "00f067aa0ba902b7" and len(traced["span.id"]) == 16
    assert traced["span.id"] != "00f067aa0ba902b7"
    assert "trace.id" not in untraced
    assert own["span.id"] == "00f067aa0ba902b7" and "parent.id" not in own


def test_exception_fields(logfile):
    logfile.configure()
    log = get_logger("x")
    try:
        {}["missing"]
    except KeyError:
        log.exception("lookup_failed", key="missing")
    err = ValueError("bad value")
    log.warning("caught", exc_info=err)
    first, second = logfile.records()
    assert first["log.level"] == "error"
    assert first["error.type"] == "KeyError"
    assert first["error.message"] == "'missing'"
    assert first["error.stack_trace"].startswith("Traceback (most recent call last):")
    assert '{}["missing"]' in first["error.stack_trace"]
    assert "exc_info" not in first
    assert second["error.type"] == "ValueError" and second["error.message"] == "bad value"


def test_exception_type_is_qualified_outside_builtins(logfile):
    logfile.configure()
    import json

    try:
        json.loads("{")
    except json.JSONDecodeError:
        get_logger("x").exception("bad_json")
    assert logfile.one()["error.type"] == "json.decoder.JSONDecodeError"


def test_fork_gives_the_child_its_own_pid(logfile):
    logfile.configure()
    log = get_logger("x")
    pid = os.fork()
    if pid == 0:  # the child: log, then leave at once
        log.info("child")
        os._exit(0)
    os.waitpid(pid, 0)
    log.info("parent")
    pids = {r["message"]: r["process.pid"] for r in logfile.records()}
    assert pids == {"child": pid, "parent": os.getpid()}


# --- the schema ------------------------------------------------------------------------------


def _catalog_records(logfile):
    log = get_logger("amebo.catalog")
    events.event_published(log, action="user.created", application="accounts", event_id=1, payload={"id": 1})
    events.webhook_delivered(
        log,
        event_id="e1",
        subscription="s1",
        action="user.created",
        url="https://u:p@hooks.example.com/x?sig=1",
        status_code=200,
        duration_ns=5_000_000,
    )
    events.webhook_failed(
        log,
        event_id="e1",
        subscription="s1",
        action="user.created",
        url="https://hooks.example.com/x",
        attempt=5,
        max_retries=5,
        status_code=503,
        duration_ns=1,
        error=TimeoutError("slow"),
    )
    events.schema_validation_failed(log, action="user.created", application="accounts", errors=["$.email: required"])
    events.http_request(
        log,
        method="post",
        path="/v1/events?x=1",
        status_code=201,
        duration_ns=10,
        client_ip="127.0.0.1",
        user_agent="curl/8",
    )
    return logfile.records()


def test_catalog_records_carry_only_declared_fields(logfile):
    logfile.configure(level="debug")
    set_correlation_id("c1")
    set_trace_context("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
    records = _catalog_records(logfile)
    assert [r["message"] for r in records] == list(schema.EVENTS)
    for record in records:
        assert schema.undeclared(record) == set(), record["message"]
        event = schema.EVENTS[record["message"]]
        assert set(schema.ALWAYS_PRESENT) <= record.keys()
        # every field the record has beyond the standard ones is one its catalog entry names
        extra = record.keys() - set(schema.ALWAYS_PRESENT) - {"correlation_id", "trace.id", "span.id", "parent.id"}
        assert extra <= set(event.fields), (record["message"], extra - set(event.fields))


def test_catalog_values(logfile):
    logfile.configure(level="debug")
    published, delivered, failed, invalid, access = _catalog_records(logfile)
    assert published["amebo.payload_size"] == len(b'{"id":1}') and published["amebo.event_id"] == "1"
    assert delivered["url.full"] == "https://hooks.example.com/x"
    assert delivered["event.duration"] == 5_000_000
    assert failed["log.level"] == "error" and failed["error.type"] == "TimeoutError"
    assert invalid["amebo.validation_errors"] == ["$.email: required"] and invalid["log.level"] == "warning"
    assert access["http.request.method"] == "POST" and access["url.path"] == "/v1/events"


def test_every_declared_field_has_a_known_elasticsearch_type():
    known = {"date", "date_nanos", "keyword", "match_only_text", "long", "wildcard", "ip", "text", "integer"}
    for f in schema.FIELDS:
        assert f.type in known, f
        assert f.description and "\n" not in f.description
    assert len({f.name for f in schema.FIELDS}) == len(schema.FIELDS)
    props = schema.es_properties()
    assert props["http"]["properties"]["response"]["properties"]["status_code"] == {"type": "long"}
    assert props["@timestamp"] == {"type": "date_nanos"}
    assert props["error"]["properties"]["stack_trace"] == {
        "type": "wildcard",
        "fields": {"text": {"type": "match_only_text"}},
    }


def test_records_of_one_millisecond_keep_their_order(logfile):
    """@timestamp carries microseconds and the template keeps them (date_nanos): records made
    within one millisecond, which a millisecond date would sort as ties, sort in the order
    they were made."""
    logfile.configure()
    log = get_logger("amebo.order")
    for i in range(300):
        log.info("step", n=i)
    stamps = [(r["n"], r["@timestamp"]) for r in logfile.records()]
    assert len({ts for _, ts in stamps}) == 300  # no two records share a microsecond (one takes several)
    assert [n for n, _ in sorted(stamps, key=lambda x: x[1])] == list(range(300))  # microseconds sort them
    by_ms: dict[str, int] = {}
    for _, ts in stamps:
        by_ms[ts[:23]] = by_ms.get(ts[:23], 0) + 1
    assert max(by_ms.values()) > 1, "no two records shared a millisecond: the test proves nothing"
    assert schema.field("@timestamp").type == "date_nanos"


def test_unknown_field_is_reported():
    with pytest.raises(KeyError, match=r"schema\.py"):
        schema.field("nope.nothing")


def test_fields_named_like_the_header_do_not_replace_it(logfile):
    logfile.configure()
    log = get_logger("x").bind(message="bound")
    log.info("the_event", **{"log.level": None, "@timestamp": "yesterday"})
    logging.getLogger("y").warning("std", extra={"log.level": "fake"})
    first, second = logfile.records()
    assert first["message"] == "the_event" and first["log.level"] == "info"
    assert TIMESTAMP.fullmatch(first["@timestamp"])
    assert first["message_"] == "bound" and first["log.level_"] is None and first["@timestamp_"] == "yesterday"
    assert second["log.level"] == "warning" and second["log.level_"] == "fake"


def test_extra_processors_run_on_structlog_records(logfile):
    logfile.configure(processors=[structlog.contextvars.merge_contextvars])
    structlog.contextvars.bind_contextvars(tenant="acme")
    try:
        get_logger("x").info("with_structlog_context")
    finally:
        structlog.contextvars.clear_contextvars()
    assert logfile.one()["tenant"] == "acme"
