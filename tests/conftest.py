"""Shared fixtures: a configured logger writing to a real file, read back as parsed records;
and the two rules every test runs under:

* **No test touches the home directory**: ``HOME`` and ``XDG_STATE_HOME`` point into the
  test's own temporary directory (subprocesses inherit them).
* **The fast layer is what it says**: a test not marked ``slow`` that starts a process,
  listens on a socket or sleeps fails at once, saying to mark it ``slow``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson
import pytest

from amebo_logging import clear_context, configure_logging
from amebo_logging.stdlib import HANDLER_TAG

if TYPE_CHECKING:
    from .fake_es import FakeElasticsearch


class LogFile:
    """A file that configure_logging() writes to, and its records read back."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.stream = open(path, "ab")  # noqa: SIM115 - closed by the fixture

    def configure(self, **kwargs: Any):
        kwargs.setdefault("fmt", "json")
        return configure_logging(stream=self.stream, **kwargs)

    def lines(self) -> list[bytes]:
        return self.path.read_bytes().splitlines(keepends=True)

    def records(self, writing: bool = False) -> list[dict[str, Any]]:
        """Every record; *writing*: the server may be writing one now, so a last line without
        its newline yet is left for the next look (a reader can see a write() half done)."""
        lines = self.lines()
        if writing and lines and not lines[-1].endswith(b"\n"):
            lines.pop()
        out = []
        for line in lines:
            assert line.endswith(b"\n"), line
            out.append(orjson.loads(line))
        return out

    def wait_for(self, message: str, count: int = 1, timeout: float = 10.0) -> list[dict[str, Any]]:
        """The records with *message*, once there are *count* of them (bounded wait).

        A server writes its access record after the response went out, so a client can
        read the file before it is there.
        """
        deadline = time.monotonic() + timeout
        while True:
            found = [r for r in self.records(writing=True) if r.get("message") == message]
            if len(found) >= count or time.monotonic() > deadline:
                assert len(found) >= count, f"{len(found)} of {count} {message!r} records after {timeout}s"
                return found
            time.sleep(0.005)

    def one(self) -> dict[str, Any]:
        records = self.records()
        assert len(records) == 1, records
        return records[0]


class NotFastError(AssertionError):
    """A test of the fast layer did what only the slow layer may."""


def _refuse(what: str) -> Any:
    def refuse(*_args: Any, **_kwargs: Any) -> Any:
        raise NotFastError(
            f"this test {what}: mark it @pytest.mark.slow (the fast layer runs no process, server or sleep)"
        )

    return refuse


@pytest.fixture(autouse=True)
def _house_rules(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
):
    home = tmp_path_factory.mktemp("home")
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("XDG_STATE_HOME", str(home / ".local" / "state"))
    if request.node.get_closest_marker("slow") is None:
        import socket
        import subprocess

        monkeypatch.setattr(subprocess.Popen, "_execute_child", _refuse("starts a process"))
        monkeypatch.setattr(socket.socket, "listen", _refuse("starts a server"))
        real_sleep = time.sleep
        monkeypatch.setattr(time, "sleep", lambda s: real_sleep(s) if s <= 0 else _refuse("sleeps")())


def _remove_ours() -> None:
    root = logging.getLogger()
    for handler in list(root.handlers):
        if getattr(handler, HANDLER_TAG, False):
            root.removeHandler(handler)


@pytest.fixture
def logfile(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[LogFile]:
    for var in (
        "AMEBO_LOG_LEVEL",
        "AMEBO_LOG_FORMAT",
        "AMEBO_LOG_FILE",
        "AMEBO_SERVICE_NAME",
        "AMEBO_SERVICE_VERSION",
        "AMEBO_ENVIRONMENT",
        "AMEBO_LOG_REDACT",
    ):
        monkeypatch.delenv(var, raising=False)
    root = logging.getLogger()
    level = root.level
    clear_context()
    lf = LogFile(tmp_path / "app.log")
    yield lf
    clear_context()
    _remove_ours()
    root.setLevel(level)
    lf.stream.close()


@pytest.fixture
def es() -> Iterator[FakeElasticsearch]:
    """The Elasticsearch-compatible test server, on 127.0.0.1."""
    from .fake_es import FakeElasticsearch

    with FakeElasticsearch() as server:
        yield server


@pytest.fixture
def ship_dir(tmp_path: Path) -> Path:
    """A directory for log files, with the state directory beside it at tmp_path/'state'."""
    logs = tmp_path / "logs"
    logs.mkdir()
    return logs
