"""The compose stack's Amebo side, run here as compose runs it, minus Docker.

The ``amebo``, ``amebo-subscriber`` and ``amebo-load`` services of docker-compose.elk.yml run
with their own commands and environment (paths and addresses moved to this machine: no Docker
engine here); each one's stdout and stderr are written as Docker's json-file driver writes
them (one entry per line, split at 16 KiB, under ``containers/<id>/<id>-json.log`` with the
container's ``config.v2.json``).  Then the ``amebo-logship`` service's command ships them, with
its container filter.  The far end must hold Amebo's event catalog, counted against what the
load generator was answered, and no other container's logs.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
import yaml

from .fake_es import FakeElasticsearch
from .shipper_proc import run_ship

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent
COMPOSE = yaml.safe_load((ROOT / "docker-compose.elk.yml").read_text())["services"]
PROJECT = "amebo-elk"
ENV = {
    "AMEBO_ADMIN_KEY": "amebo_admin_compose_test_0123456789abcdef",
    "AMEBO_SECRET": "compose-secret-0123456789abcdef",
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class DockerJsonFile:
    """Docker's json-file logging driver, for one container: its stdout and stderr lines as
    entries of ``<dir>/<id>/<id>-json.log``."""

    def __init__(self, base: Path, name: str, image: str = "amebo-elk-amebo") -> None:
        self.id = hashlib.sha256(name.encode()).hexdigest()
        directory = base / self.id
        directory.mkdir(parents=True)
        (directory / "config.v2.json").write_text(
            json.dumps({"ID": self.id, "Name": "/" + name, "Config": {"Image": image}})
        )
        self.path = directory / f"{self.id}-json.log"
        self.lock = threading.Lock()
        self.file = open(self.path, "ab", buffering=0)  # noqa: SIM115 - closed by close()
        self.threads: list[threading.Thread] = []

    def entry(self, line: bytes, stream: str) -> None:
        text = line.decode("utf-8", "replace")
        now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        parts = [text[i : i + 16384] for i in range(0, len(text), 16384)]
        with self.lock:
            for part in parts:
                self.file.write(json.dumps({"log": part, "stream": stream, "time": now}).encode() + b"\n")

    def attach(self, proc: subprocess.Popen) -> None:
        for pipe, stream in ((proc.stdout, "stdout"), (proc.stderr, "stderr")):
            t = threading.Thread(target=lambda p=pipe, s=stream: [self.entry(x, s) for x in iter(p.readline, b"")])
            t.start()
            self.threads.append(t)

    def close(self) -> None:
        for t in self.threads:
            t.join(timeout=10)
        self.file.close()


def service(
    name: str, replace: dict[str, str], env: dict[str, str], containers: Path
) -> tuple[subprocess.Popen, DockerJsonFile]:
    spec = COMPOSE[name]
    argv = [replace.get(a, a) for a in spec["command"]]
    argv = [a.replace("/app/deploy/compose", str(ROOT / "deploy" / "compose")) for a in argv]
    if argv[0] in ("python", "uvicorn"):
        argv = [sys.executable, *(["-m", "uvicorn"] if argv[0] == "uvicorn" else []), *argv[1:]]
    environment = dict(e.split("=", 1) for e in spec.get("environment", []))
    environment = {k: env.get(k, v) for k, v in environment.items()}
    cwd = containers.parent / f"{name}-workdir"  # the service's working_dir (Amebo's SQLite file)
    cwd.mkdir()
    log = DockerJsonFile(containers, f"{PROJECT}-{name}-1")
    proc = subprocess.Popen(
        argv,
        cwd=cwd,
        env={**os.environ, **environment, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    log.attach(proc)
    return proc, log


def entries(log: DockerJsonFile) -> list[dict]:
    out = []
    for raw in log.path.read_bytes().splitlines():
        inner = json.loads(raw)["log"]
        try:
            out.append(json.loads(inner))
        except ValueError:
            pass
    return out


def test_the_compose_services_fill_the_catalog_through_docker_json_file_logs(tmp_path):
    containers = tmp_path / "var" / "lib" / "docker" / "containers"
    containers.mkdir(parents=True)
    amebo_port, sub_port = free_port(), free_port()
    env = {
        **ENV,
        "AMEBO_URL": f"http://127.0.0.1:{amebo_port}",
        "SUBSCRIBER_URL": f"http://127.0.0.1:{sub_port}",
        "LOAD_INTERVAL": "0.05",
    }
    # another container on the same Docker host, whose logs are not Amebo's
    other = DockerJsonFile(containers, f"{PROJECT}-elasticsearch-1", "elasticsearch:9.1.0")
    other.entry(b'{"@timestamp":"2026-12-02T10:00:00Z","message":"started","log.level":"INFO"}\n', "stdout")
    other.file.close()
    procs = []
    try:
        procs.append(service("amebo", {"0.0.0.0": "127.0.0.1", "3310": str(amebo_port)}, env, containers))
        procs.append(service("amebo-subscriber", {"0.0.0.0": "127.0.0.1", "8000": str(sub_port)}, env, containers))
        deadline = time.monotonic() + 60
        while True:
            try:
                httpx.get(f"http://127.0.0.1:{amebo_port}/health", timeout=1)
                break
            except httpx.HTTPError:
                assert time.monotonic() < deadline, "amebo did not start"
                time.sleep(0.1)
        procs.append(service("amebo-load", {}, env, containers))
        amebo_log = procs[0][1]
        # bounded: until both subscriptions got deliveries and a first /flaky attempt failed
        while True:
            found = Counter(r.get("message") for r in entries(amebo_log))
            if (
                found["webhook_delivered"] >= 3
                and found["webhook_failed"] >= 1
                and found["schema_validation_failed"] >= 1
            ):
                break
            assert time.monotonic() < deadline, f"the catalog did not fill within 60 s: {found}"
            time.sleep(0.2)
        procs[2][0].terminate()  # the load first: it finishes the publish under way, logs it, exits
        assert procs[2][0].wait(timeout=30) == 0
    finally:
        for proc, log in procs:
            if proc.poll() is None:
                proc.terminate()
                proc.wait(timeout=30)
            log.close()
    # amebo-logship, as compose runs it (addresses and paths moved here), once
    spec = COMPOSE["amebo-logship"]
    argv = [a.replace("/var/lib/docker/containers", str(containers)) for a in spec["command"][1:]]
    argv = [a.replace("0.0.0.0:9109", "127.0.0.1:0") for a in argv]
    environment = dict(e.split("=", 1) for e in spec["environment"])
    with FakeElasticsearch() as es:
        argv[argv.index("--es-url") + 1] = es.url
        argv[argv.index("--state-dir") + 1] = str(tmp_path / "state")
        code, out, err = run_ship(
            [*argv, "--once"], env={"AMEBO_LOGSHIP_CONTAINER": environment["AMEBO_LOGSHIP_CONTAINER"]}
        )
        assert code == 0, out + err
        docs = es.docs("logs-amebo-default")
    names = Counter(d["container.name"] for d in docs)
    assert set(names) == {f"{PROJECT}-amebo-1", f"{PROJECT}-amebo-subscriber-1", f"{PROJECT}-amebo-load-1"}, names
    assert all(d["container.id"] and d["stream"] in ("stdout", "stderr") for d in docs)
    # counted against what the load generator was answered
    answered = Counter(
        d["http.response.status_code"]
        for d in docs
        if d.get("message") == "published" and "http.response.status_code" in d
    )
    by = Counter(d["message"] for d in docs if d["container.name"] == f"{PROJECT}-amebo-1")
    assert by["event_published"] == answered[201] > 0
    assert by["schema_validation_failed"] == answered[406] > 0
    assert by["webhook_delivered"] >= 3 and by["webhook_failed"] >= 1
    # one access record per request, and a delivery's trace continues into the subscriber
    assert by["http_request"] >= answered[201] + answered[406]
    delivered = [d for d in docs if d.get("message") == "webhook_delivered"]
    received = [d for d in docs if d.get("message") == "order_received"]
    assert {d["trace.id"] for d in delivered} & {d["trace.id"] for d in received}
    assert not [d for d in docs if d.get("error.message", "").startswith("the line is not JSON")], "a line not JSON"
