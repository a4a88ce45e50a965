"""The README stays true to the code: every ``sh`` and ``python`` block runs as written.

The blocks run in order, in one working directory (a copy of this checkout, as a reader's
clone), as a reader following along would run them.  The places that name the reader's own
world point at the test's: cluster URLs (``http://localhost:9200``,
``https://es.example.com:9200``) at the Elasticsearch-compatible test server,
``/var/log/amebo/`` at a directory of demo records, ``/run/secrets/es-key`` at a key file,
Kibana (``http://localhost:5601``) at a stand-in for its import API.  The reader's ``pip
install`` goes into a virtualenv of the test's own, which sees the suite's packages, so the
checkout the suite runs from stays installed as it was.  In "Your first hour" the cluster asks
for the ``elastic`` password the reader's ``.env`` holds, once a block has written it.

A comment just before a block says how it runs, when it is not "to completion, exit 0":

* ``<!-- readme-test: serves URL -->``: a server; it must answer at URL, then it is stopped;
* ``<!-- readme-test: starts URL -->``: a server the reader leaves running in another
  terminal; it must answer at URL, and serves the blocks after it until the section (``##``)
  ends;
* ``<!-- readme-test: follows -->``: a shipper following files; documents must arrive, then
  SIGTERM must stop it with exit 0;
* ``<!-- readme-test: skip (reason) -->``: cannot run here; the reason must be one of
  :data:`ALLOWED_SKIPS`.

``toml`` blocks are checked as ``amebo-logship`` config files.
"""

from __future__ import annotations

import itertools
import os
import re
import signal
import site
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import orjson
import pytest

from amebo_logging import schema

from .amebo_proc import wait_answering
from .fake_es import FakeElasticsearch
from .fake_kibana import FakeKibana

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
HEADINGS = [(README.count("\n", 0, m.start()) + 1, m.group(1)) for m in re.finditer(r"^## (.+)$", README, re.M)]
FIRST_HOUR = "Your first hour"


def section(block: Block) -> str:
    """The ``##`` section a block is in."""
    return [title for line, title in HEADINGS if line < block.line][-1]


def _shown_output() -> dict[int, str]:
    """Each runnable block followed at once by a ``text`` block: what the README says it prints."""
    out, every = {}, list(BLOCK.finditer(README))
    for m, after in itertools.pairwise(every):
        if m.group("lang") == "sh" and after.group("lang") == "text" and not README[m.end() : after.start()].strip():
            out[README.count("\n", 0, m.start("lang")) + 1] = after.group("body")
    return out


SHOWN_OUTPUT = _shown_output()


def same_shape(printed: str, shown: str) -> bool:
    """Lines of ``id rest...``: the same rests in the same order, and the same lines sharing an id."""
    a, b = (([line.split(" ", 1) for line in text.strip().splitlines()]) for text in (printed, shown))
    if [x[1:] for x in a] != [x[1:] for x in b]:
        return False
    return [[y[0] for y in a].index(x[0]) for x in a] == [[y[0] for y in b].index(x[0]) for x in b]


QUICK_START = next(b for b in RUNNABLE if section(b) == "Quick start" and b.lang == "python")


class World:
    """The reader's machine: a clone, a cluster, logs, a key file."""

    def __init__(self, base: Path, es: FakeElasticsearch, kibana: FakeKibana) -> None:
        self.es, self.kibana = es, kibana
        self.running: list[tuple[str, subprocess.Popen[bytes]]] = []  # (section, server) of `starts`
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
        # the reader's Python: its own virtualenv (what `pip install .` changes), which also
        # sees the suite's packages (so nothing is downloaded again)
        venv = base / "venv"
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, capture_output=True)
        [own] = (venv / "lib").glob("python3*/site-packages")
        (own / "suite-packages.pth").write_text("\n".join(site.getsitepackages()) + "\n")
        self.python = str(venv / "bin" / "python")
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("AMEBO") and k != "VIRTUAL_ENV"}
        self.env.update(
            PATH=f"{venv / 'bin'}{os.pathsep}{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
            VIRTUAL_ENV=str(venv),
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
            ("http://localhost:5601", self.kibana.url),
            ("/run/secrets/es-key", str(self.key)),
            ("/var/log/amebo/", f"{self.logs}/"),
        ):
            body = body.replace(mine, theirs)
        return body

    def argv(self, block: Block) -> list[str]:
        body = self.text(block.body)
        return ["bash", "-euo", "pipefail", "-c", body] if block.lang == "sh" else [self.python, "-c", body]

    def enter(self, block: Block) -> None:
        """What the reader's world is for *block*: the servers of its section still running,
        the cluster's credentials those of its section."""
        here = section(block)
        for where, proc in [r for r in self.running if r[0] != here]:
            _stop(proc)
            self.running.remove((where, proc))
        dotenv = self.clone / ".env"
        password = None
        if here.startswith(FIRST_HOUR) and dotenv.exists():
            values = dict(line.split("=", 1) for line in dotenv.read_text().splitlines() if "=" in line)
            # what compose refuses to start without (it reads the whole file, whichever services start)
            required = set(re.findall(r"\$\{([A-Z_]+):\?", (self.clone / "docker-compose.elk.yml").read_text()))
            missing = sorted(name for name in required if not values.get(name))
            assert required and not missing, f".env leaves {missing} empty: docker compose would refuse to start"
            password = values["ELASTIC_PASSWORD"]
        self.es.credentials = ("elastic", password) if password else None

    def close(self) -> None:
        for _, proc in self.running:
            _stop(proc)


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM to the block's process group (the shell and what it started), then wait."""
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)
    except ProcessLookupError:
        pass
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    with FakeElasticsearch() as es, FakeKibana() as kibana:
        w = World(tmp_path_factory.mktemp("readme"), es, kibana)
        try:
            yield w
        finally:
            w.close()


def _start(world: World, block: Block, url: str) -> subprocess.Popen[bytes]:
    """Start *block* as a server (in a process group of its own) and wait until it answers."""
    out = world.clone.parent / f"server-{block.line}.out"  # a file: a pipe nobody reads would fill
    with out.open("wb") as sink:
        proc = subprocess.Popen(
            world.argv(block), cwd=world.clone, env=world.env, stdout=sink, stderr=sink, start_new_session=True
        )
    wait_answering(proc, url, 60, str(block), lambda: out.read_text()[-2000:], _stop)
    return proc


def _serves(world: World, block: Block, url: str) -> None:
    _stop(_start(world, block, url))


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
        try:
            code = proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            code = None  # (what it logged is the message below)
        assert code == 0, f"{block} exit {code} after SIGTERM:\n{proc.communicate()[1].decode()[-2000:]}"
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
    world.enter(block)
    if directive.startswith("serves "):
        _serves(world, block, directive.split(" ", 1)[1])
        return
    if directive.startswith("starts "):
        world.running.append((section(block), _start(world, block, directive.split(" ", 1)[1])))
        return
    if directive == "follows":
        _follows(world, block)
        return
    assert not directive, f"{block}: unknown directive {directive!r}"
    result = subprocess.run(world.argv(block), cwd=world.clone, env=world.env, capture_output=True, timeout=600)
    assert result.returncode == 0, f"{block}:\n{result.stdout.decode()[-1500:]}\n{result.stderr.decode()[-3000:]}"
    shown = SHOWN_OUTPUT.get(block.line)
    if shown is not None:  # the output the README shows after it, ids aside
        assert same_shape(result.stdout.decode(), shown), f"{block} printed:\n{result.stdout.decode()}"
    if block == QUICK_START:  # its record is the one the README shows
        shown = orjson.loads(re.sub(r"\s*\n\s*", "", BLOCK.findall(README[README.index("gives (one line") :])[0][2]))
        record = orjson.loads(result.stdout.splitlines()[0])
        assert list(record) == list(shown)


def test_readme_schema_table_is_the_schema():
    assert schema.markdown_table() in README


def test_ci_runs_the_readme_test_command():
    ci = (ROOT / ".ci" / "run").read_text()
    assert "pip install -e '.[test]' && python -m pytest -q" in README
    assert "python -m pip install --quiet -e '.[test]'" in ci
    assert ci.strip().splitlines()[-1] == "python -m pytest -q"


def test_every_block_is_accounted_for():
    """A block in another language is text to read (json, text, a tree), never a command."""
    for block in blocks():
        assert block.lang in ("sh", "python", "toml", "json", "text", ""), block


def test_every_link_within_the_readme_has_its_heading():
    """GitHub's anchors: the heading lowercased, punctuation dropped, spaces as hyphens."""
    anchors = {
        re.sub(r"[^\w\- ]", "", m.group(1).strip().lower()).replace(" ", "-")
        for m in re.finditer(r"^#+ (.+)$", re.sub(r"```.*?```", "", README, flags=re.S), re.M)
    }
    links = set(re.findall(r"\]\(#([^)]+)\)", README))
    assert links and links <= anchors, links - anchors
