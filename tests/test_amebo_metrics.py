"""Amebo's metrics for real: Amebo 0.9.6 under gunicorn with 2 workers and the packaged
config, scraped by Debian's ``prometheus`` server at 1 s with the project's rule files; the
rules checked and unit-tested by ``promtool``, the Alertmanager config by ``amtool``.

One scenario: accepted and rejected publishes, deliveries to a 200 and a 503 endpoint,
publishes Amebo answers 500 to; then every counter is compared with what happened (summed
over both workers, whichever answers the scrape), HighErrorRate goes pending in Prometheus,
``/health/detailed`` answers, the SQLite file is moved away (503, with the reason), and
Amebo is stopped: ServiceDown goes pending.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from .amebo_proc import ROOT, free_port, records, serve, serve_subscriber, wait_until

pytestmark = pytest.mark.slow

ADMIN_KEY = "amebo_admin_metrics_key_7a6b5c4d3e2f1a0b"
ACCEPTED, REJECTED, BROKEN, BURST = 10, 4, 6, 3


def tool(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        pytest.fail(f"{name} is not installed: .ci/run installs Debian's prometheus and prometheus-alertmanager")
    return found


def test_rules_pass_promtool_and_their_unit_tests_and_alertmanager_passes_amtool():
    root = ROOT / "prometheus"
    for args in (
        ["check", "rules", "amebo.yml"],
        ["test", "rules", "amebo.test.yml"],
        ["check", "config", "prometheus.yml"],
    ):
        done = subprocess.run([tool("promtool"), *args], cwd=root, capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stdout + done.stderr
    done = subprocess.run(
        [tool("amtool"), "check-config", "alertmanager.yml"], cwd=root, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0 and "4 receivers" in done.stdout, done.stdout + done.stderr
    tested = {
        line.split(":", 1)[1].strip()
        for line in (root / "amebo.test.yml").read_text().splitlines()
        if "alertname:" in line
    }
    rules = yaml.safe_load((root / "amebo.yml").read_text())
    assert tested == {r["alert"] for r in rules["groups"][0]["rules"]}  # every rule has its cases


def dashboard_exprs() -> list[str]:
    return [
        t["expr"]
        for path in sorted((ROOT / "grafana" / "dashboards").glob("*.json"))
        for p in orjson.loads(path.read_bytes())["panels"]
        for t in p.get("targets", [])
    ]


def parse(body: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    out = {}
    for family in text_string_to_metric_families(body):
        for s in family.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def value(samples: dict, name: str, **labels: str) -> float:
    return sum(v for (n, ls), v in samples.items() if n == name and set(labels.items()) <= ls)


class Prometheus:
    """Debian's prometheus server on loopback: 1 s scrape and evaluation, the project's rules."""

    def __init__(self, base: Path, target: str) -> None:
        self.port = free_port()
        rules = base / "rules"
        rules.mkdir()
        shutil.copy(ROOT / "prometheus" / "amebo.yml", rules / "amebo.yml")
        config = {
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s", "scrape_timeout": "900ms"},
            "rule_files": [str(rules / "amebo.yml")],
            "scrape_configs": [
                {"job_name": "amebo", "metrics_path": "/metrics", "static_configs": [{"targets": [target]}]}
            ],
        }
        (base / "prometheus.yml").write_text(yaml.safe_dump(config))
        self.log = (base / "prometheus.log").open("wb")
        self.proc = subprocess.Popen(
            [
                tool("prometheus"),
                f"--config.file={base / 'prometheus.yml'}",
                f"--storage.tsdb.path={base / 'tsdb'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
            ],
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        self.url = f"http://127.0.0.1:{self.port}"
        wait_until(self._ready, 30, "prometheus ready")

    def _ready(self) -> bool:
        assert self.proc.poll() is None, "prometheus exited"
        try:
            return httpx.get(f"{self.url}/-/ready", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    def alert_state(self, name: str) -> str | None:
        alerts = httpx.get(f"{self.url}/api/v1/alerts", timeout=5).json()["data"]["alerts"]
        states = {a["state"] for a in alerts if a["labels"]["alertname"] == name}
        return "firing" if "firing" in states else "pending" if "pending" in states else None

    def check_queries(self, exprs: list[str]) -> dict[str, str]:
        """Each query as Prometheus's own parser and engine answer it: "success" or the error."""
        out = {}
        for expr in exprs:
            promql = expr.replace("$__rate_interval", "1m")
            answer = httpx.get(f"{self.url}/api/v1/query", params={"query": promql}, timeout=10).json()
            out[expr] = answer["status"] if answer["status"] == "success" else answer.get("error", "?")
        return out

    def close(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=30)
        self.log.close()


@pytest.fixture(scope="module")
def scenario(tmp_path_factory) -> dict[str, Any]:
    base = tmp_path_factory.mktemp("metrics")
    port, sub_port = free_port(), free_port()
    subscriber = serve_subscriber(sub_port, base / "subscriber.stdout", base / "subscriber.stderr")
    home = base / "amebo-home"
    home.mkdir()
    out, err = base / "amebo.stdout", base / "amebo.stderr"
    env = {"AMEBO_ADMIN_KEY": ADMIN_KEY, "AMEBO_GRACE_SECONDS": "0", "AMEBO_LOG_LEVEL": "info", "PYTHONPATH": str(ROOT)}
    argv = [
        sys.executable,
        "-m",
        "gunicorn",
        "-c",
        "python:amebo_logging.gunicorn",
        "-w",
        "2",
        "--bind",
        f"127.0.0.1:{port}",
    ]
    amebo = serve([*argv, "amebo_logging.amebo:app"], home, env, port, out.open("wb"), err.open("wb"), err.read_text)
    prometheus = Prometheus(base, f"127.0.0.1:{port}")
    result: dict[str, Any] = {"out": out, "err": err}
    admin = {"X-Amebo-Admin-Key": ADMIN_KEY}
    try:
        # a connection per request: the kernel hands them to both workers
        no_keepalive = httpx.Limits(max_keepalive_connections=0)
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30, limits=no_keepalive) as client:

            def call(method: str, path: str, expect: tuple[int, ...], **kw: Any) -> httpx.Response:
                r = client.request(method, path, **kw)
                assert r.status_code in expect, (path, r.status_code, r.text[:300])
                return r

            sub = f"http://127.0.0.1:{sub_port}"
            call("POST", "/v1/applications", (200, 201), headers=admin, json={"application": "shop", "address": sub})
            schema = {"type": "object", "properties": {"id": {"type": "integer"}}, "required": ["id"]}
            body = {"action": "order.created", "application": "shop", "schemata": schema}
            call("POST", "/v1/actions", (200, 201), headers=admin, json=body)
            for handler in ("/ok", "/fail"):
                sub_body = {"application": "shop", "action": "order.created", "handler": handler, "max_retries": 1}
                call("POST", "/v1/subscriptions", (200, 201), headers=admin, json=sub_body)
            for i in range(ACCEPTED + REJECTED):
                payload = {"id": i} if i < ACCEPTED else {"id": f"x{i}"}
                event = {"action": "order.created", "deduper": f"m-{i}", "payload": payload}
                call("POST", "/v1/events", (201,) if i < ACCEPTED else (406,), headers=admin, json=event)
            headers = {**admin, "content-type": "application/json"}

            def broken(_: int = 0) -> None:  # a body that is not JSON: Amebo answers 500
                call("POST", "/v1/events", (500,), headers=headers, content=b"notjson")

            def publishers() -> set[int]:
                return {
                    r["process.pid"]
                    for r in records(out)
                    if r.get("message") == "http_request" and r.get("url.path") == "/v1/events"
                }

            # Sequential connections may all be accepted by one worker (both are woken, the
            # same one tends to win). Bursts of concurrent ones reach the other while the first
            # is busy: sent until both workers have answered a publish, and every one counted.
            sent = 0
            with ThreadPoolExecutor(BURST) as pool:
                while sent < BROKEN or len(publishers()) < 2:
                    assert sent < 50 * BURST, f"{sent} publishes, all answered by one worker: {publishers()}"
                    list(pool.map(broken, range(BURST)))
                    sent += BURST
            result["broken"] = sent

            def settled() -> bool:
                # Amebo's own count of gists settled (it may deliver one twice, from both
                # workers: attempts alone can reach 2 x ACCEPTED early), and a record for every
                # delivery the subscriber answered
                own = parse(call("GET", "/metrics", (200,)).text)
                gists = value(own, "amebo_gists", status="delivered") + value(own, "amebo_gists", status="failed")
                attempts = sum(r.get("message", "").startswith("webhook_") for r in records(out))
                answers = sum(r.get("message") == "order_received" for r in records(base / "subscriber.stdout"))
                return gists == 2 * ACCEPTED and attempts == answers

            wait_until(settled, 60, "every gist settled and every answered delivery recorded")
            result["pids"] = publishers()
            result["scrapes"] = [parse(call("GET", "/metrics", (200,)).text) for _ in range(6)]
            result["body"] = call("GET", "/metrics", (200,)).text
            # a worker killed outright: gunicorn starts another; its counts stay in the totals
            victim = max(result["pids"])
            os.kill(victim, signal.SIGKILL)
            wait_until(
                lambda: sum(r.get("message", "").startswith("Booting worker") for r in records(out)) == 3,
                30,
                "a new worker",
            )
            result["after_kill"] = [parse(call("GET", "/metrics", (200,)).text) for _ in range(4)]
            deadline = time.monotonic() + 30
            while prometheus.alert_state("HighErrorRate") is None:  # errors flowing, scraped each second
                assert time.monotonic() < deadline, "HighErrorRate not pending within 30 s"
                broken()
                time.sleep(0.2)
            result["high_error_rate"] = prometheus.alert_state("HighErrorRate")
            detailed = call("GET", "/health/detailed", (200,))
            result["detailed"] = detailed.json()
            (home / "amebo.db").rename(home / "amebo.db.moved")  # an operator's mistake
            result["moved"] = [call("GET", path, (503,)).json() for path in ("/health/database", "/health/detailed")]
            (home / "amebo.db.moved").rename(home / "amebo.db")
            result["back"] = call("GET", "/health/database", (200,)).json()
            result["queries"] = prometheus.check_queries(dashboard_exprs())
        amebo.send_signal(signal.SIGTERM)
        assert amebo.wait(timeout=60) == 0
        wait_until(lambda: prometheus.alert_state("ServiceDown") is not None, 30, "ServiceDown pending")
        result["service_down"] = prometheus.alert_state("ServiceDown")
    finally:
        for proc in (amebo, subscriber):
            if proc.poll() is None:
                proc.terminate()
                proc.wait(timeout=30)
        prometheus.close()
    result["records"] = records(out)
    result["subscriber"] = records(base / "subscriber.stdout")
    return result


def test_every_counter_equals_what_happened_summed_over_both_workers(scenario):
    assert len(scenario["pids"]) == 2  # the publishes were answered by both workers
    broken = scenario["broken"]
    recs = scenario["records"]
    answered = Counter(r["answered"] for r in scenario["subscriber"] if r.get("message") == "order_received")
    for samples in scenario["scrapes"] + scenario["after_kill"]:  # whichever worker answered, killed one included
        assert value(samples, "amebo_events_published_total", application="shop", action="order.created") == ACCEPTED
        assert value(samples, "amebo_schema_validation_failures_total", action="order.created") == REJECTED
        assert value(samples, "amebo_webhook_deliveries_total", outcome="delivered") == answered[200]
        assert value(samples, "amebo_webhook_deliveries_total", outcome="failed", final="true") == answered[503]
        assert value(samples, "amebo_errors_total", kind="http_5xx") == broken
        assert value(samples, "amebo_errors_total", kind="unhandled") >= broken
        assert value(samples, "amebo_webhook_delivery_duration_seconds_count") == answered[200] + answered[503]
        events = value(
            samples,
            "http_server_request_duration_seconds_count",
            http_request_method="POST",
            http_route="/v1/events",
        )
        assert events == ACCEPTED + REJECTED + broken
        assert value(samples, "http_server_request_duration_seconds_count", http_response_status_code="500") == broken
    # and Amebo's own publishes (the dead letters of /fail) are counted as its records are
    published = [r for r in recs if r.get("message") == "event_published"]
    assert len([r for r in published if r["amebo.action"] == "order.created"]) == ACCEPTED
    for samples in scenario["scrapes"]:
        assert value(samples, "amebo_events_published_total") == len(published) > ACCEPTED


def test_the_exposition_is_clean_for_promtool_apart_from_amebos_own_series(scenario):
    done = subprocess.run(
        [tool("promtool"), "check", "metrics"], input=scenario["body"], capture_output=True, text=True, timeout=30
    )
    complaints = [line for line in (done.stdout + done.stderr).splitlines() if line.strip()]
    # Amebo's own two series are as Amebo names them; ours pass
    assert all(line.startswith(("amebo_delivery_latency_ms", "amebo_gists_total")) for line in complaints), complaints
    assert "# TYPE amebo_events_published gauge" in scenario["body"]  # Amebo's series stay


def test_the_guides_alerts_go_pending_in_a_real_prometheus(scenario):
    assert scenario["high_error_rate"] in ("pending", "firing")
    assert scenario["service_down"] in ("pending", "firing")


def test_health_in_detail_and_an_unreadable_database(scenario):
    detailed = scenario["detailed"]
    assert detailed["status"] == "ok" and detailed["database"]["status"] == "ok"
    assert 0 <= detailed["database"]["round_trip_ms"] < 1000
    assert detailed["delivery_daemon"]["last_cycle_seconds_ago"] < 30
    assert set(detailed["deliveries"]) == {"pending", "retrying"}
    assert detailed["disk"]["free_bytes"] > 0
    database, detailed_moved = scenario["moved"]
    assert database["status"] == "unavailable" and "amebo.db is gone" in database["reason"]
    assert detailed_moved["status"] == "unavailable" and detailed_moved["reason"].startswith("database: ")
    assert scenario["back"]["status"] == "ok"


def test_every_dashboard_query_runs_in_a_real_prometheus(scenario):
    assert len(scenario["queries"]) >= 30
    failed = {expr: answer for expr, answer in scenario["queries"].items() if answer != "success"}
    assert not failed, failed


def test_amebo_still_serves_the_series_the_database_dashboard_reads(scenario):
    from amebo_logging.metrics import AMEBO_SERIES

    families = {f.name for f in text_string_to_metric_families(scenario["body"])}
    for series in AMEBO_SERIES:  # the parser names a counter's family without _total
        assert series in families or series.removesuffix("_total") in families, series
