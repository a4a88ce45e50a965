"""Real Amebo 0.9.6 under real gunicorn, as production serves it: 3 uvicorn workers and the
packaged config (``gunicorn -c python:amebo_logging.gunicorn``), stdout and stderr pipes
read by a deliberately slow reader.

One scenario, run once, requests sent from 6 threads at a time: records of 100 B to 64 KiB
(padded records, tracebacks, access records with long User-Agents, long validation errors);
rejected publishes with secrets under any key at any depth; publishes with every
combination of valid, malformed, all-zero, version ``ff`` and repeated ``traceparent``,
with and without ``X-Amebo-Trace-Id``; then deliveries to a slow subscriber, in flight when
gunicorn gets SIGTERM.  The tests count what came out of the pipes against what was done.
"""

from __future__ import annotations

import os
import random
import signal
import sys
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from .amebo_proc import ROOT, free_port, records, serve, serve_subscriber, wait_until

pytestmark = pytest.mark.slow

ADMIN_KEY = "amebo_admin_prod_key_0c1d2e3f4a5b6c7d8e9f"
TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
OTHER_TRACE = "5cf92f3577b34da6a3ce929d0e0e4737"
BARE = "0af7651916cd43dd8448eb211c80319c"
TRACEPARENTS: dict[str, list[str]] = {
    "none": [],
    "valid": [f"00-{TRACE}-00f067aa0ba902b7-01"],
    "malformed": [f"00-{TRACE}-zz-01"],
    "zero-span": [f"00-{TRACE}-0000000000000000-01"],
    "zero-trace": ["00-00000000000000000000000000000000-00f067aa0ba902b7-01"],
    "version-ff": [f"ff-{TRACE}-00f067aa0ba902b7-01"],
    "repeated": [f"00-{TRACE}-00f067aa0ba902b7-01", f"00-{OTHER_TRACE}-00f067aa0ba902b8-01"],
    "repeated-same": [f"00-{TRACE}-00f067aa0ba902b7-01", f"00-{TRACE}-00f067aa0ba902b7-01"],
}
SCHEMA = {
    "type": "object",
    "properties": {
        "id": {"type": "integer"},
        "api_key": {"type": "string", "maxLength": 16},
        "password": {"type": "integer"},
        "user": {
            "type": "object",
            "properties": {"pin": {"type": "string", "pattern": "^[0-9]{4}$"}, "role": {"enum": ["a", "b"]}},
            "additionalProperties": False,
        },
        "items": {"type": "array", "items": {"type": "object", "properties": {"note": {"type": "number"}}}},
    },
    "required": ["id"],
}


class Pipe:
    """One pipe of the server, read slowly (small reads, a pause after each) into a file:
    a container runtime that lags, so the pipe fills and writes over PIPE_BUF are split."""

    def __init__(self, fd: int, path: Path, pause: float) -> None:
        self.path = path
        self._thread = threading.Thread(target=self._read, args=(fd, pause), daemon=True)
        self._thread.start()

    def _read(self, fd: int, pause: float) -> None:
        with self.path.open("wb") as out:
            while chunk := os.read(fd, 2048):
                out.write(chunk)
                out.flush()
                time.sleep(pause)
        os.close(fd)

    def join(self) -> None:
        self._thread.join(60)
        assert not self._thread.is_alive(), "the server's pipe did not end"


class Scenario:
    def __init__(self, base: Path) -> None:
        self.base = base
        self.out = base / "gunicorn.stdout"
        self.err = base / "gunicorn.stderr"
        self.sub_out = base / "subscriber.stdout"
        self.big: Counter[str] = Counter()  # big_record / big_traceback requests made
        self.access = 0  # requests that get an access record
        self.published: dict[str, tuple[str, dict[str, Any]]] = {}  # event id -> (combination, answer)
        self.rejected = 0
        self.secrets: list[str] = []
        self.slow_events: list[str] = []


def secret_payloads(rng: random.Random, count: int) -> list[tuple[dict[str, Any], str]]:
    """Payloads that break the schema, each with a secret value somewhere in it."""
    out = []
    for i in range(count):
        secret = f"sekret{i:02d}-{rng.getrandbits(64):016x}"
        payload: dict[str, Any] = {"id": i}
        where = i % 6
        if where == 0:
            payload["api_key"] = secret  # too long
        elif where == 1:
            payload["password"] = secret  # not an integer
        elif where == 2:
            payload["user"] = {"pin": secret}  # no match of the pattern
        elif where == 3:
            payload["user"] = {"role": secret}  # not in the enum
        elif where == 4:
            payload["user"] = {secret: secret}  # no additional properties, key and value secret
        else:
            payload["items"] = [{"note": 1}, {"note": secret}]  # deep, in an array
        if i % 2:
            payload["id"] = secret  # and the id, too
        out.append((payload, secret))
    return out


@pytest.fixture(scope="module")
def scenario(tmp_path_factory) -> Scenario:
    base = tmp_path_factory.mktemp("gunicorn")
    sc = Scenario(base)
    rng = random.Random(18)
    port, sub_port = free_port(), free_port()
    subscriber = serve_subscriber(sub_port, sc.sub_out, base / "subscriber.stderr")
    workdir = base / "amebo-home"
    workdir.mkdir()
    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    env = {
        "PYTHONPATH": str(ROOT),
        "AMEBO_ADMIN_KEY": ADMIN_KEY,
        "AMEBO_SECRET": "amebo-secret-prod-0123456789",
        "AMEBO_GRACE_SECONDS": "0",
        "AMEBO_LOG_LEVEL": "info",
        "AMEBO_LOG_FORMAT": "",
    }
    argv = [sys.executable, "-m", "gunicorn", "-c", "python:amebo_logging.gunicorn", "-w", "3"]
    argv += ["--bind", f"127.0.0.1:{port}", "--graceful-timeout", "20", "tests.big_records_app:app"]
    try:
        server = serve(argv, workdir, env, port, out_w, err_w)
    finally:
        os.close(out_w)
        os.close(err_w)
    pipes = [Pipe(out_r, sc.out, 0.002), Pipe(err_r, sc.err, 0.002)]
    admin = {"X-Amebo-Admin-Key": ADMIN_KEY}
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60) as client:

            def call(method: str, path: str, expect: int, **kw: Any) -> httpx.Response:
                r = client.request(method, path, **kw)
                assert r.status_code == expect or (expect == 201 and r.status_code == 200), (
                    path,
                    r.status_code,
                    r.text[:500],
                )
                return r

            sub_url = f"http://127.0.0.1:{sub_port}"
            call("POST", "/v1/applications", 201, headers=admin, json={"application": "shop", "address": sub_url})
            for action in ("order.created", "order.slow"):
                call(
                    "POST",
                    "/v1/actions",
                    201,
                    headers=admin,
                    json={"action": action, "application": "shop", "schemata": SCHEMA},
                )
            for action, handler in (("order.created", "/ok"), ("order.slow", "/slow")):
                call(
                    "POST",
                    "/v1/subscriptions",
                    201,
                    headers=admin,
                    json={"application": "shop", "action": action, "handler": handler, "max_retries": 1},
                )
            sc.access = 5

            jobs: list[Any] = []
            for n in range(60):  # records of 100 B to 64 KiB from every worker
                size = rng.choice([100, 1000, 4000, 4097, 9000, 30_000, 65_536]) + rng.randrange(50)
                kind = "big_traceback" if n % 3 == 0 else "big_record"
                sc.big[kind] += 1
                query = f"/_log?n={n}&bytes={size}" + ("&kind=traceback" if kind == "big_traceback" else "")
                jobs.append(("GET", query, 204, {}))
            for n in range(30):  # access records with long User-Agents
                agent = f"agent-{n}-" + "u" * rng.choice([100, 3000, 6000, 12_000])
                jobs.append(("GET", "/v1/actions", 200, {"headers": {**admin, "User-Agent": agent}}))
                sc.access += 1
            for n, (payload, secret) in enumerate(secret_payloads(rng, 24)):
                sc.secrets.append(secret)
                body = {"action": "order.created", "deduper": f"bad-{n}", "payload": payload}
                jobs.append(("POST", "/v1/events", 406, {"headers": admin, "json": body}))
                sc.access += 1
                sc.rejected += 1
            n = 0
            for combo, values in TRACEPARENTS.items():
                for bare in (False, True):
                    headers = list(admin.items()) + [("traceparent", v) for v in values]
                    if bare:
                        headers.append(("X-Amebo-Trace-Id", BARE))
                    body = {"action": "order.created", "deduper": f"trace-{n}", "payload": {"id": n}}
                    jobs.append(("POST", "/v1/events", 201, {"headers": headers, "json": body, "combo": (combo, bare)}))
                    sc.access += 1
                    n += 1
            rng.shuffle(jobs)

            def run(job: tuple[str, str, int, dict[str, Any]]) -> None:
                method, path, expect, kw = job
                combo = kw.pop("combo", None)
                r = call(method, path, expect, **kw)
                if combo is not None:
                    sc.published[r.json()["event"]] = (combo, r.json())

            with ThreadPoolExecutor(6) as pool:
                list(pool.map(run, jobs))
            wanted = set(sc.published)
            wait_until(
                lambda: (
                    wanted <= {r.get("event_id") for r in records(sc.sub_out) if r.get("message") == "order_received"}
                ),
                60,
                "every event delivered",
            )
            # deliveries in flight at shutdown: the slow subscriber holds each for 8 s
            for n in range(6):
                body = {"action": "order.slow", "deduper": f"slow-{n}", "payload": {"id": n}}
                sc.slow_events.append(call("POST", "/v1/events", 201, headers=admin, json=body).json()["event"])
                sc.access += 1
            wait_until(
                lambda: any(
                    r.get("message") == "order_received" and r.get("event_id") in sc.slow_events
                    for r in records(sc.sub_out)
                ),
                30,
                "a slow delivery under way",
            )
        server.send_signal(signal.SIGTERM)
        assert server.wait(timeout=60) == 0
    finally:
        for proc in (server, subscriber):
            if proc.poll() is None:
                proc.terminate()
                proc.wait(timeout=30)
        for pipe in pipes:
            pipe.join()
    return sc


def lines(path: Path) -> list[bytes]:
    return [line for line in path.read_bytes().splitlines() if line.strip()]


def by(recs: list[dict[str, Any]], message: str) -> list[dict[str, Any]]:
    return [r for r in recs if r.get("message") == message]


def test_every_line_of_stdout_and_stderr_is_one_whole_record(scenario):
    for path in (scenario.out, scenario.err):
        for line in lines(path):
            record = orjson.loads(line)  # raises on a torn line
            assert isinstance(record, dict) and record["@timestamp"] and record["log.level"], line[:200]
    recs = records(scenario.out)
    sizes = [len(line) for line in lines(scenario.out)]
    assert max(sizes) > 64 * 1024 and sum(s > 4096 for s in sizes) > 50  # the records that tear without the relay
    # gunicorn's own lines, master's and each worker's, are records too
    gunicorn = Counter(r["message"].split(" with pid")[0] for r in recs if r["log.logger"] == "gunicorn.error")
    assert gunicorn["Starting gunicorn 27.0.1"] == 1 and gunicorn["Booting worker"] == 3
    assert gunicorn["Shutting down: Master"] == 1
    assert len({r["process.pid"] for r in recs}) == 4


def test_each_catalog_record_is_counted_exactly(scenario):
    recs = records(scenario.out)
    assert len(by(recs, "big_record")) == scenario.big["big_record"]
    assert len(by(recs, "big_traceback")) == scenario.big["big_traceback"]
    assert all(len(r["error.stack_trace"]) > 100 for r in by(recs, "big_traceback"))
    assert len(by(recs, "http_request")) == scenario.access
    published = by(recs, "event_published")
    ours = set(scenario.published) | set(scenario.slow_events)
    assert {r["amebo.event_id"] for r in published} == ours and len(published) == len(ours)
    assert len(by(recs, "schema_validation_failed")) == scenario.rejected


def test_rejected_payloads_leave_where_and_why_and_no_value(scenario):
    text = scenario.out.read_text() + scenario.err.read_text()
    for secret in scenario.secrets:
        assert secret not in text and secret[:12] not in text, secret
    assert ADMIN_KEY not in text
    errors = Counter(
        e for r in by(records(scenario.out), "schema_validation_failed") for e in r["amebo.validation_errors"]
    )
    assert errors["$.api_key: maxLength 16"] == 4 and errors["$.password: type integer"] == 4
    assert errors["$.user.pin: pattern ^[0-9]{4}$"] == 4 and errors['$.user.role: enum ["a","b"]'] == 4
    assert errors["$.user: additionalProperties false"] == 4 and errors["$.items[1].note: type number"] == 4
    assert errors["$.id: type integer"] == 12


def test_one_trace_per_publish_whatever_the_headers(scenario):
    recs = records(scenario.out)
    published = {r["amebo.event_id"]: r for r in by(recs, "event_published")}
    deliveries = by(recs, "webhook_delivered")
    received = [r for r in records(scenario.sub_out) if r["message"] == "order_received"]
    for event_id, ((combo, bare), answer) in scenario.published.items():
        trace = published[event_id]["trace.id"]
        # W3C Trace Context: a traceparent is valid alone, never repeated (even when the same)
        expected = TRACE if combo == "valid" else BARE if bare else None
        if expected is not None:
            assert trace == expected, (combo, bare)
        else:
            assert trace not in (TRACE, OTHER_TRACE, BARE, "0" * 32), (combo, bare)
        assert answer["trace_id"] == trace, (combo, bare)  # what Amebo stored
        mine = [d for d in deliveries if d["amebo.event_id"] == event_id]
        theirs = [r for r in received if r["event_id"] == event_id]
        assert mine and theirs, (combo, bare)
        assert {d["trace.id"] for d in mine} == {r["trace.id"] for r in theirs} == {trace}, (combo, bare)


def test_a_delivery_interrupted_by_sigterm_leaves_a_record(scenario):
    recs = records(scenario.out)
    attempts = {
        (r["amebo.event_id"], r["amebo.attempt"]): r
        for r in by(recs, "webhook_delivered") + by(recs, "webhook_failed")
        if r["amebo.event_id"] in scenario.slow_events
    }
    started = {
        (r["event_id"], r["attempt"])
        for r in records(scenario.sub_out)
        if r["message"] == "order_received" and r["event_id"] in scenario.slow_events
    }
    assert started and started <= attempts.keys()
    # the attempts Amebo will send again: cancelled, or cut off with Amebo's database closed
    interrupted = [r for r in attempts.values() if "interrupted" in r.get("tags", ())]
    assert interrupted
    for r in interrupted:
        assert r["log.level"] == "warning" and r["amebo.attempt"] == 1
        assert f"sends it again as attempt {r['amebo.attempt']}" in r["error.message"]


def test_python_m_amebo_logging_amebo_with_workers_serves_through_gunicorn(tmp_path):
    port = free_port()
    out, err = tmp_path / "out", tmp_path / "err"
    argv = [sys.executable, "-m", "amebo_logging.amebo", "--host", "127.0.0.1", "--port", str(port), "--workers", "2"]
    proc = serve(argv, tmp_path, {"AMEBO_LOG_LEVEL": "info"}, port, out.open("wb"), err.open("wb"), err.read_text)
    try:
        wait_until(lambda: len(by(records(out), "Application startup complete.")) == 2, 30, "two workers")
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
    recs = records(out)
    assert err.read_bytes() == b""
    assert by(recs, "Using worker: uvicorn_worker.UvicornWorker") and by(recs, "Shutting down: Master")
