"""Golden records: both paths (structlog and the stdlib bridge), byte for byte.

Each case logs one record; the line is compared, as bytes, to ``tests/golden/records.ndjson``
after the few values that change per run are normalised (the time, the pid, the stack
trace's frames).  Regenerate only for an intended change of format:
``python -m tests.test_golden --write``.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Callable
from pathlib import Path

from amebo_logging import bind_context, get_logger, set_correlation_id, set_trace_context

GOLDEN = Path(__file__).resolve().parent / "golden" / "records.ndjson"
TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


class Lookup:  # heaven's client address object
    address, port = "10.0.0.7", 53211


def _raise() -> None:
    raise ValueError("bad payload")


def _structlog_cases() -> list[tuple[str, Callable[[], None]]]:
    log = get_logger("amebo.gists")

    def with_exception() -> None:
        try:
            _raise()
        except ValueError:
            log.exception("publish_failed", action="user.created")

    return [
        ("structlog_fields", lambda: log.info("event_published", action="user.created", payload_size=123)),
        ("structlog_bound", lambda: log.bind(application="billing", token="t0p").warning("slow", elapsed_ms=1.5)),
        (
            "structlog_context",
            lambda: (
                set_correlation_id("rid-1"),
                bind_context(tenant="t1"),
                set_trace_context(TRACEPARENT, new_span=False),
                log.info("ctx"),
            ),
        ),
        ("structlog_header_names", lambda: log.info("named", message="m", **{"log.level": "x", "@timestamp": 1})),
        (
            "structlog_redaction",
            lambda: log.info(
                "to https://u:pw@h/x?access_token=abc&page=2",
                password="p",
                nested={"api_key": "k", "ok": [1, {"secret": 2}]},
            ),
        ),
        ("structlog_percent", lambda: log.info("published %s of %d", "evt_1", 2)),
        ("structlog_exception", with_exception),
        ("structlog_odd_values", lambda: log.info("odd", raw=b"\xff", big=2**70, items={3}, none=None)),
    ]


def _stdlib_cases() -> list[tuple[str, Callable[[], None]]]:
    std = logging.getLogger("amebo.events")

    def with_exc_info() -> None:
        try:
            _raise()
        except ValueError:
            std.error("could not publish", exc_info=True)

    return [
        ("stdlib_percent", lambda: std.warning("Could not list events: %s", "timeout")),
        ("stdlib_extra", lambda: std.info("with extra", extra={"attempt": 2, "password": "p"})),
        (
            "stdlib_amebo_access",
            lambda: logging.getLogger("amebo.access").info(
                "%s %s -> %s %sms",
                "POST",
                "/v1/events",
                201,
                1.25,
                extra={
                    "method": "POST",
                    "path": "/v1/events?x=1",
                    "status": 201,
                    "duration_ms": 1.25,
                    "client_ip": Lookup(),
                },
            ),
        ),
        (
            "stdlib_uvicorn_access",
            lambda: logging.getLogger("uvicorn.access").info(
                '%s - "%s %s HTTP/%s" %d', "10.1.2.3:5000", "GET", "/v1/actions?access_token=s3cr3t", "1.1", 200
            ),
        ),
        (
            "stdlib_uvicorn_color",
            lambda: logging.getLogger("uvicorn.error").info(
                "Started server process [%d]", 42, extra={"color_message": "Started server process [\x1b[36m%d\x1b[0m]"}
            ),
        ),
        ("stdlib_dict_message", lambda: std.info({"event": "dict_message", "n": 1})),
        ("stdlib_exc_info", with_exc_info),
        ("stdlib_custom_level", lambda: std.log(25, "between info and warning")),
        ("stdlib_url_secrets", lambda: std.info("deliver to %s", "http://u:pw@x/h?sig=abc")),
        (
            "stdlib_context",
            lambda: (
                set_correlation_id("rid-9"),
                set_trace_context(TRACEPARENT, new_span=False),
                std.info("in a request"),
            ),
        ),
    ]


def _normalise(line: bytes) -> bytes:
    line = re.sub(rb'"@timestamp":"[^"]+"', b'"@timestamp":"T"', line, count=1)
    line = re.sub(rb'"process.pid":\d+', b'"process.pid":0', line)
    key = b'"error.stack_trace":"'
    start = line.find(key)
    if start < 0:
        return line
    i = start + len(key)
    end = i
    while line[end] != 0x22:  # the closing quote: skip escaped characters
        end += 2 if line[end] == 0x5C else 1
    trace = line[i:end].split(b"\\n")
    return line[:i] + trace[0] + b"\\n...\\n" + trace[-1] + line[end:]


def produce(tmp: Path) -> list[bytes]:
    from amebo_logging import clear_context, configure_logging

    out = []
    for name, case in _structlog_cases() + _stdlib_cases():
        path = tmp / f"{name}.log"
        with open(path, "ab") as stream:
            clear_context()
            configure_logging(stream=stream, fmt="json", level="debug", service_version="0.9.6", environment="staging")
            case()
            clear_context()
        [line] = path.read_bytes().splitlines(keepends=True)
        out.append(_normalise(line))
    return out


def test_both_paths_write_the_golden_records_byte_for_byte(logfile, tmp_path):
    produced = produce(tmp_path)
    golden = GOLDEN.read_bytes().splitlines(keepends=True)
    assert len(produced) == len(golden)
    for got, want in zip(produced, golden, strict=True):
        assert got == want


if __name__ == "__main__" and "--write" in sys.argv:
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        lines = produce(Path(d))
    GOLDEN.parent.mkdir(exist_ok=True)
    GOLDEN.write_bytes(b"".join(lines))
    print(f"wrote {len(lines)} golden records to {GOLDEN}")
