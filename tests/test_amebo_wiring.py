"""``amebo_logging.amebo`` wiring, each case in a fresh interpreter (it patches process-wide
state): order independence against Amebo's own ``configure_logging()``, idempotence, staying
passive on an untested version, heaven's unhandled errors as one record."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import orjson
import pytest

pytestmark = pytest.mark.slow


def run(code: str, **env: str) -> tuple[list[dict], str, str]:
    import os

    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "AMEBO_LOG_FORMAT": "", **env},
        cwd="/tmp",
    )
    assert result.returncode == 0, result.stderr
    recs = [orjson.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    return recs, result.stdout, result.stderr


@pytest.mark.parametrize("order", ["amebo_first", "instrument_first"])
def test_amebo_configure_logging_cannot_undo_it_in_either_order(order):
    first = "import amebo.router\n" if order == "amebo_first" else ""
    recs, out, err = run(
        first
        + textwrap.dedent("""
        import logging
        from amebo_logging.amebo import instrument
        assert instrument() is True and instrument() is True   # idempotent
        import amebo.router
        from amebo.utils.logs import configure_logging as amebos
        amebos()                                                # Amebo's, called again after
        amebo.router.configure_logging()
        root = logging.getLogger()
        print(sorted(type(h).__name__ for h in root.handlers), flush=True)
        logging.getLogger("amebo.aproko").error("Delivery failed for %s: %s", "http://u:pw@x/h", "boom")
        logging.getLogger("amebo.aproko").warning("deliver to http://u:pw@x/h?token=t0ps3cret")
    """)
    )
    assert "['EcsHandler']" in out  # one root handler, ours; Amebo's StreamHandler is gone
    [rec] = [r for r in recs if r.get("log.logger") == "amebo.aproko"]  # "Delivery failed" is a webhook_failed
    assert rec["message"] == "deliver to http://u:[REDACTED]@x/h?token=[REDACTED]"
    assert "pw" not in out and "t0ps3cret" not in out and err == ""


def test_plain_configure_logging_before_amebo_is_replaced_as_the_readme_warns():
    recs, out, err = run("""
        import logging
        from amebo_logging import configure_logging
        configure_logging()
        import amebo.router                  # Amebo's configure_logging() runs at import
        logging.getLogger("amebo.x").warning("after")
    """)
    assert not recs and "after" in err  # Amebo's text handler on stderr: use instrument()


def test_an_untested_amebo_version_is_left_alone_with_one_warning():
    recs, out, err = run("""
        import amebo_logging.amebo as integration
        integration._version_of = lambda package: "0.10.0" if package == "amebo" else "2.4.3"
        assert integration.instrument() is False and integration.instrument() is False
        import amebo.aproko, amebo.services.broker
        assert not hasattr(amebo.aproko.attempt, "_amebo_logging")
        assert not hasattr(amebo.services.broker.publish, "_amebo_logging")
    """)
    warnings = [r for r in recs if r["message"] == "amebo_not_instrumented"]
    assert len(warnings) == 1 and warnings[0]["amebo_version"] == "0.10.0" and err == ""


def test_a_framework_500_is_one_error_record_with_its_traceback():
    recs, out, err = run("""
        import asyncio, sys
        import httpx
        from amebo_logging.amebo import instrument
        instrument()
        from heaven import App
        from amebo_logging import CorrelationMiddleware
        app = App()
        async def boom(req, res, ctx):
            raise RuntimeError("kaput")
        app.GET("/boom", boom)
        async def main():
            transport = httpx.ASGITransport(app=CorrelationMiddleware(app))
            async with httpx.AsyncClient(transport=transport, base_url="http://amebo") as client:
                r = await client.get("/boom", headers={"X-Request-ID": "req-500"})
                assert r.status_code == 500
        asyncio.run(main())
    """)
    assert err == ""  # no raw traceback on stderr
    [error] = [r for r in recs if r["log.logger"] == "heaven"]
    assert error["log.level"] == "error" and error["message"] == "[HEAVEN 500] GET /boom: kaput"
    assert error["error.type"] == "RuntimeError" and "in boom" in error["error.stack_trace"]
    assert error["correlation_id"] == "req-500"
    [access] = [r for r in recs if r["message"] == "http_request"]
    assert access["http.response.status_code"] == 500 and access["correlation_id"] == "req-500"


def test_without_the_integration_uvicorn_access_lines_lose_their_secrets_and_probes_are_debug():
    recs, out, err = run("""
        import logging
        from amebo_logging import configure_logging
        configure_logging()
        access = logging.getLogger("uvicorn.access")
        access.info('%s - "%s %s HTTP/%s" %d', "10.1.2.3:5000", "GET", "/v1/actions?access_token=s3cr3t&page=2",
                    "1.1", 200)
        access.info('%s - "%s %s HTTP/%s" %d', "10.1.2.3:5000", "GET", "/health", "1.1", 200)
        class Lookup:  # what heaven gives Amebo's access hook as client_ip
            address, port = "10.9.8.7", 4321
        logging.getLogger("amebo.access").info("%s %s -> %s %sms", "GET", "/v1/events", 200, 1.5,
            extra={"method": "GET", "path": "/v1/events", "status": 200, "duration_ms": 1.5, "client_ip": Lookup()})
    """)
    assert len(recs) == 2  # the probe is DEBUG, below the default INFO
    uv, amebo = recs
    assert (
        uv["message"] == 'GET /v1/actions?access_token=[REDACTED]&page=2 HTTP/1.1" 200'.join(['10.1.2.3:5000 - "', ""])
        and "s3cr3t" not in out
    )
    assert uv["url.path"] == "/v1/actions" and uv["client.ip"] == "10.1.2.3" and uv["http.version"] == "1.1"
    assert amebo["client.ip"] == "10.9.8.7" and amebo["url.path"] == "/v1/events"
