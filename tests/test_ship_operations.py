"""Operating amebo-logship: /metrics, /health, status, check, the --once summary and progress."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import httpx
import orjson
import pytest

from .fake_es import FakeElasticsearch
from .far_end import wait_docs
from .shipper_proc import ShipperProcess, on_terminal, record, run_ship, ship_args, write_lines

pytestmark = pytest.mark.slow


def metrics(url: str) -> dict[str, float]:
    """The scraped samples, as {"name{labels}": value}."""
    out = {}
    for line in httpx.get(url).text.splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            out[name] = float(value)
    return out


def wait_until(condition, timeout=30.0, what="condition"):
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"{what} not met within {timeout}s"
        time.sleep(0.02)


@pytest.fixture
def monitored(es, ship_dir):
    procs = []

    def start(*extra):
        proc = ShipperProcess(ship_args(es, ship_dir, "--metrics-addr", "127.0.0.1:0", *extra))
        procs.append(proc)
        port = proc.event("monitor_listening")["port"]
        return proc, f"http://127.0.0.1:{port}"

    yield start
    for proc in procs:
        proc.kill()


def test_metrics_move_as_lines_ship_dead_letter_and_retry(es, ship_dir, monitored):
    es.store.index_templates["amebo"] = {
        "index_patterns": ["logs-amebo-*"],
        "priority": 200,
        "data_stream": {},
        "template": {"mappings": {"properties": {"n": {"type": "long"}}}},
    }
    write_lines(ship_dir / "app.log", [record(i, n=i) for i in range(100)] + [b"not json\n"])
    proc, base = monitored()
    wait_docs(es, 101)
    wait_until(lambda: metrics(base + "/metrics").get("amebo_logship_documents_delivered_total") == 101)
    m = metrics(base + "/metrics")
    assert m["amebo_logship_lines_read_total"] == 101
    assert m["amebo_logship_parse_failures_total"] == 1
    assert m["amebo_logship_files_watched"] == 1
    assert m['amebo_logship_lag_bytes{file="%s"}' % (ship_dir / "app.log")] == 0
    assert m["amebo_logship_last_delivery_timestamp_seconds"] > time.time() - 60
    assert m["amebo_logship_bulk_request_duration_seconds_count"] >= 1
    es.fail_requests(429, 503)
    write_lines(ship_dir / "app.log", [record(200, n="bad"), record(201, n=1)])
    wait_until(lambda: metrics(base + "/metrics").get("amebo_logship_documents_dead_lettered_total") == 1)
    m = metrics(base + "/metrics")
    assert m['amebo_logship_retries_total{cause="429"}'] == 1 and m['amebo_logship_retries_total{cause="5xx"}'] == 1
    assert m["amebo_logship_documents_delivered_total"] == 102
    proc.signal()
    assert proc.wait() == 0


def test_health_flips_to_503_when_elasticsearch_goes_and_back(es, ship_dir, monitored):
    write_lines(ship_dir / "app.log", [record(0)])
    proc, base = monitored()
    wait_docs(es, 1)
    r = httpx.get(base + "/health")
    assert r.status_code == 200 and r.json()["status"] == "ok"
    es.stop()
    wait_until(lambda: httpx.get(base + "/health").status_code == 503, what="503 while Elasticsearch is down")
    body = httpx.get(base + "/health").json()
    assert body["status"] == "unavailable" and "unreachable" in body["reason"]
    es.start()
    wait_until(lambda: httpx.get(base + "/health").status_code == 200, what="200 once it is back")
    proc.signal()
    assert proc.wait() == 0


def test_health_reports_a_stall_while_lines_wait(es, ship_dir, monitored):
    write_lines(ship_dir / "app.log", [record(i) for i in range(10)])
    es.fail_items(lambda doc_id, doc: 429)  # Elasticsearch answers, but accepts nothing
    proc, base = monitored("--health-stall-seconds", "1")
    wait_until(lambda: httpx.get(base + "/health").status_code == 503, what="stall detected")
    assert "nothing delivered" in httpx.get(base + "/health").json()["reason"]
    es.fail_items(None)
    wait_docs(es, 10)
    wait_until(lambda: httpx.get(base + "/health").status_code == 200)
    proc.signal()
    assert proc.wait() == 0


def test_status_table_and_json(es, ship_dir):
    state = str(ship_dir.parent / "state")
    write_lines(ship_dir / "app.log", [record(i) for i in range(10)])
    assert run_ship(["ship", str(ship_dir / "*.log"), "--once", "--es-url", es.url, "--state-dir", state])[0] == 0
    write_lines(ship_dir / "app.log", [record(10)])
    code, out, _ = run_ship(["status", "--state-dir", state, "--json"])
    assert code == 0
    found = orjson.loads(out)
    [row] = found["files"]
    assert found["totals"] == {
        "delivered": 10,
        "duplicates": 0,
        "failure_store": 0,
        "dead_lettered": 0,
        "last_failure_store": None,
        "last_dead_letter": None,
    }
    assert row["file"] == str(ship_dir / "app.log") and row["lag_bytes"] == len(record(10))
    assert row["offset"] == sum(len(record(i)) for i in range(10)) and row["last_delivery"]
    assert found["shipping"] is None  # no shipper runs on it now
    code, out, _ = run_ship(["status", "--state-dir", state])
    assert code == 0
    assert out.splitlines()[0].split() == ["FILE", "ID", "OFFSET", "SIZE", "LAG", "LAST", "DELIVERY"]
    assert str(ship_dir / "app.log") in out and str(len(record(10))) in out
    assert out.splitlines()[-1] == (
        "documents since the state was created: 10 delivered, 0 already there, 0 kept in the failure store, "
        "0 dead-lettered"
    )
    code, out, err = run_ship(["status", "--state-dir", str(ship_dir.parent / "nothing")])
    assert code == 0 and "nothing has been shipped" in out  # a fresh machine: a true answer, not an error
    code, out, err = run_ship(["status", "--state-dir", str(ship_dir.parent / "nothing"), "--json"])
    assert code == 0 and orjson.loads(out) == {
        "files": [],
        "totals": {
            "delivered": 0,
            "duplicates": 0,
            "failure_store": 0,
            "dead_lettered": 0,
            "last_failure_store": None,
            "last_dead_letter": None,
        },
        "shipping": None,
    }


def test_check_healthy_setup(es, ship_dir):
    code, out, err = run_ship(["check", "--es-url", es.url])
    assert code == 0, out + err
    # without `setup`, the stack's generic logs template would take the documents: said, not fatal
    marks = {line.split()[1].rstrip(":"): line.split()[0] for line in out.splitlines()}
    assert marks["target"] == "warn" and sorted(marks.values()) == ["ok"] * 4 + ["warn"], out
    assert "with template logs, not this project's amebo-logs: run `amebo-logship setup` first" in out
    # the first ship says the same, and what the documents will miss, and still ships
    log = ship_dir / "first.log"
    write_lines(log, [record(i) for i in range(3)], "wb")
    args = ["ship", str(log), "--once", "--es-url", es.url, "--data-stream", "logs-first-default"]
    code, out, err = run_ship([*args, "--state-dir", str(ship_dir.parent / "state")])
    [warned] = [orjson.loads(x) for x in err.splitlines() if '"preflight_warning"' in x]
    assert code == 0 and warned["log.level"] == "warning" and warned["check"] == "target"
    assert "run `amebo-logship setup` first" in warned["reason"] and "generic mappings" in warned["reason"]
    from elasticsearch import Elasticsearch

    from amebo_logging.ship.elastic_setup import apply

    apply(Elasticsearch(es.url), "90d", report=lambda change: None)
    code, out, err = run_ship(["check", "--es-url", es.url])
    assert code == 0 and [line.split()[0] for line in out.splitlines()] == ["ok"] * 5, out + err
    assert "will be created on the first write (template amebo-logs)" in out


def test_check_broken_setups():
    with FakeElasticsearch(username="u", password="p", privileges=False, builtin_logs_template=False) as es:
        code, out, _ = run_ship(["check", "--es-url", es.url, "--username", "u", "--password-file", "/dev/null"])
        assert code == 4 and "FAIL  credentials" in out and "refused" in out
        env = {"AMEBO_LOGSHIP_PASSWORD": "p"}
        code, out, _ = run_ship(["check", "--es-url", es.url, "--username", "u"], env=env)
        assert code == 3
        assert "FAIL  target: no data stream logs-amebo-default" in out and "amebo-logship setup" in out
        assert "FAIL  privileges: the credentials may not create documents" in out
    code, out, _ = run_ship(["check", "--es-url", es.url])  # the server is gone now
    assert code == 3 and "FAIL  connection: Elasticsearch at" in out and "is unreachable" in out


def test_once_prints_only_the_summary_when_not_a_terminal(es, ship_dir):
    write_lines(ship_dir / "app.log", [record(i) for i in range(50)])
    code, out, err = run_ship(
        ["ship", str(ship_dir / "*.log"), "--once", "--es-url", es.url, "--state-dir", str(ship_dir.parent / "state")]
    )
    assert code == 0
    assert out.count("\n") == 1 and out.startswith("delivered 50 documents")
    assert "\r" not in err and "ETA" not in err


def test_once_shows_progress_on_a_terminal(es, ship_dir):
    write_lines(ship_dir / "app.log", [record(i) for i in range(20_000)])
    es.faults.delay = 0.1
    code, seen = on_terminal(
        [
            sys.executable,
            "-m",
            "amebo_logging.ship",
            "ship",
            str(ship_dir / "*.log"),
            "--once",
            "--es-url",
            es.url,
            "--state-dir",
            str(ship_dir.parent / "state"),
            "--batch-size",
            "2000",
        ],
        env={**os.environ, "AMEBO_LOG_LEVEL": "warning"},
    )
    assert code == 0
    assert re.search(rb"\[#*\.*\] +[\d.]+ (B|KiB|MiB) / [\d.]+ MiB +[\d,]+ docs/s +ETA", seen), seen[-300:]
    assert b"dead letters 0" in seen


def test_prometheus_rules_parse_and_name_only_real_metrics():
    import yaml

    from amebo_logging.ship.monitor import METRIC_NAMES

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    with open(os.path.join(root, "prometheus", "alerts.yml")) as f:
        rules = yaml.safe_load(f)
    with open(os.path.join(root, "prometheus", "prometheus.yml")) as f:
        scrape = yaml.safe_load(f)
    assert scrape["scrape_configs"][0]["metrics_path"] == "/metrics"
    assert scrape["rule_files"] == ["alerts.yml", "amebo.yml"]
    assert [job["job_name"] for job in scrape["scrape_configs"]] == ["amebo-logship", "amebo", "node"]
    names = set()
    exprs = []
    for group in rules["groups"]:
        for rule in group["rules"]:
            assert {"alert", "expr", "for", "labels", "annotations"} <= rule.keys(), rule
            exprs.append(rule["expr"])
            names.add(rule["alert"])
    assert {
        "AmeboLogshipDown",
        "AmeboLogshipDeliveryStalled",
        "AmeboLogshipDeadLettersGrowing",
        "AmeboLogshipLagGrowing",
        "AmeboLogshipFailureStoreUsed",
    } <= names
    known = {n.removesuffix("_total") for n in METRIC_NAMES} | set(METRIC_NAMES)
    for expr in exprs:
        for metric in re.findall(r"\bamebo_logship_[a-z_]+", expr):
            base = re.sub(r"_(bucket|count|sum)$", "", metric)
            assert metric in known or base in known, f"{metric} in {expr!r} is not exported"
        assert expr.count("(") == expr.count(")")


def test_prometheus_rules_pass_promtool_and_their_unit_tests():
    """promtool (Debian's prometheus package; .ci/run installs it) checks the rules, then runs
    prometheus/alerts.test.yml: each alert fires on the series the shipper exports, and not before."""
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.fail("promtool is not installed: .ci/run installs Debian's prometheus package")
    root = Path(__file__).resolve().parent.parent / "prometheus"
    for args in (["check", "rules", "alerts.yml"], ["test", "rules", "alerts.test.yml"]):
        done = subprocess.run([promtool, *args], cwd=root, capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stdout + done.stderr
    tested = set(re.findall(r"alertname: (\w+)", (root / "alerts.test.yml").read_text()))
    assert {"AmeboLogshipFailureStoreUsed", "AmeboLogshipDeadLettersGrowing", "AmeboLogshipDeliveryStalled"} <= tested


def test_a_line_waiting_for_its_newline_is_not_a_stall(es, ship_dir, monitored):
    write_lines(ship_dir / "app.log", [record(0), b'{"unfinished":'])
    proc, base = monitored("--health-stall-seconds", "1")
    wait_docs(es, 1)
    time.sleep(1.5)  # past the stall threshold: there is no event to wait for, only time
    r = httpx.get(base + "/health")
    assert r.status_code == 200, r.json()
    assert r.json()["lag_bytes"] == len(b'{"unfinished":')
    proc.signal()
    assert proc.wait() == 0
