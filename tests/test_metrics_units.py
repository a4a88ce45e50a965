"""amebo_logging.metrics in-process: route templates, bounded labels, the middleware's
histogram and its /metrics body, monitor_performance, and rules naming only real series."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from amebo_logging import metrics

ROOT = Path(__file__).resolve().parent.parent


def sample(name: str, **labels: str) -> float:
    for family in text_string_to_metric_families(metrics.exposition().decode()):
        for s in family.samples:
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                return s.value
    return 0.0


def call(app, method: str, path: str) -> tuple[int, dict[bytes, bytes], bytes]:
    sent = []

    async def receive():
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message):
        sent.append(message)

    asyncio.run(app({"type": "http", "method": method, "path": path, "headers": []}, receive, send))
    start = sent[0]
    return start["status"], dict(start["headers"]), b"".join(m.get("body", b"") for m in sent[1:])


def answering(status: int, body: bytes = b"", boom: bool = False):
    async def app(scope, receive, send):
        if boom:
            raise RuntimeError("boom")
        await send({"type": "http.response.start", "status": status, "headers": [(b"content-length", b"3")]})
        await send({"type": "http.response.body", "body": body})

    return app


def test_paths_map_to_route_templates_never_raw_paths():
    routes = metrics.RouteTemplates(
        [
            ("GET", "/v1/events"),
            ("GET", "/v1/events/:event"),
            ("GET", "/v1/events/latest"),
            ("POST", "/v1/events"),
            ("GET", "/public/*"),
            ("GET", "/"),
        ]
    )
    assert routes.template("GET", "/v1/events/abc123") == "/v1/events/:event"
    assert routes.template("GET", "/v1/events/latest") == "/v1/events/latest"  # the literal wins
    assert routes.template("HEAD", "/v1/events/") == "/v1/events"
    assert routes.template("GET", "/public/css/a.css") == "/public/*"
    assert routes.template("GET", "/") == "/"
    assert routes.template("DELETE", "/v1/events/abc") == "unmatched"
    assert routes.template("GET", "/nothing/here") == "unmatched"


def test_requests_are_timed_by_route_and_5xx_and_exceptions_are_errors():
    routes = metrics.RouteTemplates([("GET", "/v1/events/:event")])
    before = sample("amebo_errors_total", kind="http_5xx"), sample("amebo_errors_total", kind="unhandled")
    for status in (200, 200, 503):
        call(metrics.MetricsMiddleware(answering(status, b"abc"), routes), "GET", f"/v1/events/e{status}")
    with pytest.raises(RuntimeError):
        call(metrics.MetricsMiddleware(answering(200, boom=True), routes), "GET", "/v1/events/x")
    ok = sample(
        "http_server_request_duration_seconds_count",
        http_request_method="GET",
        http_route="/v1/events/:event",
        http_response_status_code="200",
    )
    assert ok >= 2
    assert sample("amebo_errors_total", kind="http_5xx") == before[0] + 2  # the 503, and the 500 of the raise
    assert sample("amebo_errors_total", kind="unhandled") == before[1] + 1
    assert "/v1/events/e200" not in metrics.exposition().decode()


def test_our_series_follow_the_apps_own_metrics_body():
    amebo = b"# TYPE amebo_events_published gauge\namebo_events_published 3"
    status, headers, body = call(metrics.MetricsMiddleware(answering(200, amebo)), "GET", "/metrics")
    assert status == 200 and body.startswith(amebo + b"\n")
    assert int(headers[b"content-length"]) == len(body)
    names = {f.name for f in text_string_to_metric_families(body.decode())}
    assert {"amebo_events_published", "amebo_errors", "http_server_request_duration_seconds"} <= names
    # an app without /metrics: ours alone
    status, _, body = call(metrics.MetricsMiddleware(answering(404, b"nope")), "GET", "/metrics")
    assert status == 200 and b"nope" not in body and b"amebo_errors_total" in body


def test_every_error_kind_and_delivery_outcome_has_a_series_from_zero():
    text = metrics.exposition().decode()
    for kind in metrics.ERROR_KINDS:
        assert f'amebo_errors_total{{kind="{kind}"}}' in text
    for outcome in ("delivered", "failed"):
        assert re.search(rf'amebo_webhook_deliveries_total{{final="(true|false)",outcome="{outcome}"}}', text)


def test_label_values_are_bounded():
    for n in range(metrics.MAX_LABEL_VALUES + 30):
        metrics.count_published("shop", f"bounded.{n}")
    metrics.count_published("shop", "bad label value with spaces")
    families = {f.name: f for f in text_string_to_metric_families(metrics.exposition().decode())}
    actions = {s.labels["action"] for s in families["amebo_events_published"].samples}
    assert len(actions) <= metrics.MAX_LABEL_VALUES + 1 and "other" in actions


def test_monitor_performance_times_sync_and_async_functions_and_their_exceptions():
    @metrics.monitor_performance
    def settle(x):
        if x < 0:
            raise ValueError(x)
        return x * 2

    @metrics.monitor_performance(name="reports.build")
    async def build():
        return "built"

    assert settle(2) == 4 and settle.__name__ == "settle"
    with pytest.raises(ValueError):
        settle(-1)
    assert asyncio.run(build()) == "built"
    label = f"{__name__}.test_monitor_performance_times_sync_and_async_functions_and_their_exceptions.<locals>.settle"
    assert sample("amebo_function_duration_seconds_count", function=label) == 2
    assert sample("amebo_function_duration_seconds_count", function="reports.build") == 1


def test_the_amebo_rules_name_only_exported_series():
    rules = yaml.safe_load((ROOT / "prometheus" / "amebo.yml").read_text())
    [group] = rules["groups"]
    assert {r["alert"] for r in group["rules"]} >= {"HighErrorRate", "ServiceDown"}
    by_name = {r["alert"]: r for r in group["rules"]}
    assert by_name["HighErrorRate"]["expr"] == "rate(amebo_errors_total[5m]) > 0.1"  # the guide's, as written
    assert by_name["ServiceDown"]["expr"] == 'up{job="amebo"} == 0'
    known = set(metrics.METRIC_NAMES) | {"up"}
    for rule in group["rules"]:
        for metric in re.findall(r"\b(?:amebo_[a-z_]+|http_server_[a-z_]+|up)\b(?=[{\[\s)]|$)", rule["expr"]):
            base = re.sub(r"_(bucket|count|sum)$", "", metric)
            assert metric in known or base in known, f"{metric} in {rule['alert']} is not exported"
