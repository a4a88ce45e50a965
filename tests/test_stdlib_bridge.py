"""Stdlib records (amebo.*, uvicorn, httpx, asyncio) in the same ECS shape."""

from __future__ import annotations

import asyncio
import logging
import os

import pytest
from pythonjsonlogger.core import BaseJsonFormatter

from amebo_logging import bind_context, get_logger, schema, set_correlation_id
from amebo_logging.stdlib import EcsJsonFormatter


def test_the_bridge_is_a_python_json_logger_formatter():
    assert issubclass(EcsJsonFormatter, BaseJsonFormatter)


def test_same_shape_as_structlog_records(logfile):
    logfile.configure()
    set_correlation_id("rid-7")
    bind_context(application="billing")
    logging.getLogger("amebo.gists").info("published %s of %d", "evt_1", 2)
    get_logger("amebo.gists").info("published evt_1 of 2")
    std, native = logfile.records()
    for record in (std, native):
        record.pop("@timestamp")
    assert std == native
    assert std["message"] == "published evt_1 of 2" and std["correlation_id"] == "rid-7"
    assert std["application"] == "billing" and std["process.pid"] == os.getpid()


def test_extra_fields_are_kept_and_redacted(logfile):
    logfile.configure()
    logging.getLogger("amebo.auth").warning(
        "login", extra={"user": "ada", "headers": {"Authorization": "Bearer abc", "Accept": "*/*"}}
    )
    record = logfile.one()
    assert record["user"] == "ada"
    assert record["headers"] == {"Authorization": "[REDACTED]", "Accept": "*/*"}


def test_amebo_access_extras_become_ecs(logfile):
    logfile.configure()
    logging.getLogger("amebo.access").info(
        "%s %s -> %s %sms",
        "POST",
        "/v1/events?draft=1",
        201,
        12.5,
        extra={
            "method": "POST",
            "path": "/v1/events?draft=1",
            "status": 201,
            "duration_ms": 12.5,
            "client_ip": "10.1.2.3",
        },
    )
    record = logfile.one()
    assert record["message"] == "http_request"
    assert record["http.request.method"] == "POST"
    assert record["url.path"] == "/v1/events"
    assert record["http.response.status_code"] == 201
    assert record["event.duration"] == 12_500_000
    assert record["client.ip"] == "10.1.2.3"
    assert not {"method", "path", "status", "duration_ms", "client_ip"} & record.keys()
    assert schema.undeclared(record) == set()


def test_amebo_request_id_filter_value_is_the_correlation_id(logfile):
    logfile.configure()

    class RequestIdFilter(logging.Filter):  # Amebo 0.9's filter stamps request_id on records
        def filter(self, record):
            record.request_id = "legacy-rid"
            return True

    log = logging.getLogger("amebo.legacy")
    log.addFilter(RequestIdFilter())
    try:
        log.info("old style")
    finally:
        log.filters.clear()
    record = logfile.one()
    assert record["correlation_id"] == "legacy-rid" and "request_id" not in record


def test_uvicorn_color_message_is_dropped(logfile):
    logfile.configure()
    logging.getLogger("uvicorn.error").info(
        "Started server process [%d]", 42, extra={"color_message": "Started server process [\x1b[36m%d\x1b[0m]"}
    )
    record = logfile.one()
    assert record["message"] == "Started server process [42]" and "color_message" not in record


def test_exc_info_gives_error_fields(logfile):
    logfile.configure()
    try:
        _ = 1 / 0
    except ZeroDivisionError:
        logging.getLogger("amebo.events").exception("Could not list events: %s", "boom")
    record = logfile.one()
    assert record["log.level"] == "error"
    assert record["error.type"] == "ZeroDivisionError"
    assert record["error.message"] == "division by zero"
    assert "1 / 0" in record["error.stack_trace"]


def test_level_threshold_applies_even_to_loggers_set_lower(logfile):
    logfile.configure(level="warning")
    chatty = logging.getLogger("httpx")
    chatty.setLevel(logging.DEBUG)
    try:
        chatty.info("HTTP Request: GET http://x/ 200")
        chatty.warning("kept")
    finally:
        chatty.setLevel(logging.NOTSET)
    assert [r["message"] for r in logfile.records()] == ["kept"]


def test_asyncio_logger(logfile):
    logfile.configure(level="debug")

    async def main():
        logging.getLogger("asyncio").debug("Using selector: %s", "EpollSelector")

    asyncio.run(main())
    assert any(r["log.logger"] == "asyncio" and r["message"].startswith("Using selector") for r in logfile.records())


def test_url_passwords_in_messages_are_redacted(logfile):
    logfile.configure()
    logging.getLogger("amebo.database").error("cannot reach %s", "postgresql://amebo:hunter2@db:5432/amebo")
    assert logfile.one()["message"] == "cannot reach postgresql://amebo:[REDACTED]@db:5432/amebo"


@pytest.mark.parametrize("msg", [{"event": "dict_message", "n": 1}, {"message": "m", "n": 1}])
def test_dict_messages(logfile, msg):
    logfile.configure()
    logging.getLogger("x").info(msg)
    record = logfile.one()
    assert record["n"] == 1 and record["message"] in ("dict_message", "m")


def test_golden_stdlib_record(logfile):
    logfile.configure(service_version="0.9.6", environment="staging")
    set_correlation_id("rid-9")
    logging.getLogger("amebo.events").warning("Could not list events: %s", "timeout", extra={"attempt": 2})
    record = logfile.one()
    record.pop("@timestamp")
    assert record == {
        "log.level": "warning",
        "message": "Could not list events: timeout",
        "ecs.version": schema.ECS_VERSION,
        "log.logger": "amebo.events",
        "service.name": "amebo",
        "service.version": "0.9.6",
        "service.environment": "staging",
        "process.pid": os.getpid(),
        "correlation_id": "rid-9",
        "attempt": 2,
    }
