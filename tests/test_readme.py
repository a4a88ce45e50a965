"""The README stays true to the code: every ``sh`` and ``python`` block runs as written.

The blocks run in order, in one working directory (a copy of this checkout, as a reader's
clone), as a reader following along would run them.  The places that name the reader's own
world point at the test's: cluster URLs (``http://localhost:9200``,
``https://es.example.com:9200``) at the Elasticsearch-compatible test server,
``/var/log/amebo/`` at a directory of demo records, ``/run/secrets/es-key`` at a key file.

A comment just before a block says how it runs, when it is not "to completion, exit 0":

* ``<!-- readme-test: serves URL -->``: a server; it must answer at URL, then it is stopped;
* ``<!-- readme-test: follows -->``: a shipper following files; documents must arrive, then
  SIGTERM must stop it with exit 0;
* ``<!-- readme-test: skip (reason) -->``: cannot run here; the reason must be one of
  :data:`ALLOWED_SKIPS`.

``toml`` blocks are checked as ``amebo-logship`` config files.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import orjson
import pytest

from amebo_logging import schema

from .fake_es import FakeElasticsearch

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()
BLOCK = re.compile(r"(?:<!-- readme-test: (?P<directive>.*?) -->\n)?```(?P<lang>[a-z]*)\n(?P<body>.*?)```", re.S)
ALLOWED_SKIPS = (
    "this is the command that runs this test",
    "needs a Docker engine",
    "needs a Kubernetes cluster",
    "the development loop",
)


@dataclass
class Block:
    line: int
    lang: str
    directive: str
    body: str

    def __str__(self) -> str:
        return f"README.md:{self.line} ({self.lang})"


def blocks() -> list[Block]:
    out = []
    for m in BLOCK.finditer(README):
        line = README.count("\n", 0, m.start("lang")) + 1
        out.append(Block(line, m.group("lang"), (m.group("directive") or "").strip(), m.group("body")))
    return out


RUNNABLE = [b for b in blocks() if b.lang in ("sh", "python", "toml")]


class World:
    """The reader's machine: a clone, a cluster, logs, a key file."""

    def __init__(self, base: Path, es: FakeElasticsearch) -> None:
        self.es = es
        self.clone = base / "clone"
        files = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout
        for name in filter(None, files.decode().split("\0")):
            target = self.clone / name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes((ROOT / name).read_bytes())
        self.logs = base / "var-log-amebo"
        self.logs.mkdir()
        self.key = base / "es-key"
        self.key.write_text("readme-test-key\n")
        home = base / "home"
        home.mkdir()
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("AMEBO")}
        self.env.update(
            PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
            HOME=str(home),
            XDG_STATE_HOME=str(base / "state"),
            ES_API_KEY="readme-test-key",
            PIP_DISABLE_PIP_VERSION_CHECK="1",
            AMEBO_HOST="127.0.0.1",  # what serves here binds to loopback only
        )
        demo = subprocess.run(
            [sys.executable, "-m", "amebo_logging", "demo", "--count", "20"],
            capture_output=True,
            check=True,
            env=self.env,
        )
        (self.logs / "amebo.log").write_bytes(demo.stdout)

    def text(self, body: str) -> str:
        for mine, theirs in (
            ("https://es.example.com:9200", self.es.url),
            ("http://localhost:9200", self.es.url),
            ("/run/secrets/es-key", str(self.key)),
            ("/var/log/amebo/", f"{self.logs}/"),
        ):
            body = body.replace(mine, theirs)
        return body

    def argv(self, block: Block) -> list[str]:
        body = self.text(block.body)
        return ["bash", "-euo", "pipefail", "-c", body] if block.lang == "sh" else [sys.executable, "-c", body]


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    with FakeElasticsearch() as es:
        yield World(tmp_path_factory.mktemp("readme"), es)


def _serves(world: World, block: Block, url: str) -> None:
    proc = subprocess.Popen(
        world.argv(block), cwd=world.clone, env=world.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, f"{block} stopped: {proc.communicate()[1].decode()[-2000:]}"
            try:
                httpx.get(url, timeout=2)
                break
            except httpx.HTTPError:
                assert time.monotonic() < deadline, f"{block} did not answer at {url}"
                time.sleep(0.2)
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def _follows(world: World, block: Block) -> None:
    before = len(world.es.docs("*"))
    proc = subprocess.Popen(
        world.argv(block), cwd=world.clone, env=world.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    try:
        deadline = time.monotonic() + 60
        while len(world.es.docs("*")) <= before:
            assert proc.poll() is None, f"{block} stopped: {proc.communicate()[1].decode()[-2000:]}"
            assert time.monotonic() < deadline, f"{block} shipped nothing"
            time.sleep(0.1)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0, proc.communicate()[1].decode()[-2000:]
    finally:
        if proc.poll() is None:
            proc.kill()


@pytest.mark.parametrize("block", RUNNABLE, ids=str)
def test_every_block_runs_as_written(world, block):
    directive = block.directive
    if directive.startswith("skip"):
        reason = directive[len("skip") :].strip(" ()")
        assert reason.startswith(ALLOWED_SKIPS), f"{block}: not an accepted reason to skip: {reason}"
        pytest.skip(f"{block}: {reason}")
    if block.lang == "toml":
        from amebo_logging.ship.cli import main
        from amebo_logging.ship.params import flag_name, load_config

        path = world.clone / "amebo-logship.toml"
        path.write_text(world.text(block.body))
        ship = main.commands["ship"]
        every = {flag_name(p) for c in main.commands.values() for p in c.params if p.name}
        loaded = load_config(path, "ship", {flag_name(p): p.name for p in ship.params if p.name}, every)
        assert loaded["patterns"] and loaded["es_urls"]
        return
    if directive.startswith("serves "):
        _serves(world, block, directive.split(" ", 1)[1])
        return
    if directive == "follows":
        _follows(world, block)
        return
    assert not directive, f"{block}: unknown directive {directive!r}"
    result = subprocess.run(world.argv(block), cwd=world.clone, env=world.env, capture_output=True, timeout=600)
    assert result.returncode == 0, f"{block}:\n{result.stdout.decode()[-1500:]}\n{result.stderr.decode()[-3000:]}"
    if block.line == RUNNABLE[3].line:  # the quick start: its record is the one the README shows
        shown = orjson.loads(re.sub(r"\s*\n\s*", "", BLOCK.findall(README[README.index("gives (one line") :])[0][2]))
        record = orjson.loads(result.stdout.splitlines()[0])
        assert list(record) == list(shown)


def test_readme_schema_table_is_the_schema():
    assert schema.markdown_table() in README


def test_ci_runs_the_readme_test_command():
    ci = (ROOT / ".ci" / "run").read_text()
    assert "pip install '.[test]' && python -m pytest -q" in README
    assert "python -m pip install --quiet '.[test]'" in ci
    assert ci.strip().splitlines()[-1] == "python -m pytest -q"


def test_every_block_is_accounted_for():
    """A block in another language is text to read (json, text, a tree), never a command."""
    for block in blocks():
        assert block.lang in ("sh", "python", "toml", "json", "text", ""), block
