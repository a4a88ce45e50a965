"""The relay: several writers' lines, written in pieces of any size and in any order, come out
whole, each a record; a writer that dies mid-line leaves a record tagged truncated.

No process here: the "children" are pipes written by this test, as a forked worker would
write them; the slow layer runs the relay under real gunicorn (test_amebo_production).
"""

from __future__ import annotations

import os
import threading

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from amebo_logging import configure_logging
from amebo_logging.relay import Pipes, Relay


class Streams:
    """The "real" stdout and stderr: pipes drained by a thread into bytes."""

    def __init__(self) -> None:
        self.fds = {}
        self.data = {"stdout": bytearray(), "stderr": bytearray()}
        self.threads = []
        for name in self.data:
            r, w = os.pipe()
            self.fds[name] = w
            t = threading.Thread(target=self._drain, args=(r, self.data[name]), daemon=True)
            t.start()
            self.threads.append(t)

    @staticmethod
    def _drain(fd: int, into: bytearray) -> None:
        while chunk := os.read(fd, 65536):
            into += chunk
        os.close(fd)

    def close(self) -> dict[str, list[bytes]]:
        for fd in self.fds.values():
            os.close(fd)
        for t in self.threads:
            t.join(10)
        return {name: bytes(data).splitlines() for name, data in self.data.items()}


def relayed(writes: list[tuple[int, str, bytes]], children: int, *, hello: bool = True) -> dict[str, list[bytes]]:
    """Run a relay over *children* pairs of pipes; *writes* are (child, stream, bytes) in order."""
    streams = Streams()
    relay = Relay(streams.fds["stdout"], streams.fds["stderr"])
    relay.start()
    pipes = [relay.open_pipes() for _ in range(children)]
    if hello:
        for n, p in enumerate(pipes):
            for fd in p:
                os.write(fd, b"\x00amebo-logging-relay pid=%d\n" % (1000 + n))
    for child, stream, data in writes:
        fd = pipes[child].out if stream == "stdout" else pipes[child].err
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
    for p in pipes:
        relay.close_pipes(p)  # the child has exited
    relay.stop(timeout=10)
    return streams.close()


def record(n: int, size: int) -> bytes:
    line = orjson.dumps({"message": "r", "n": n, "pad": "x" * max(0, size - 40)}) + b"\n"
    return line


@settings(max_examples=40, deadline=None)
@given(
    sizes=st.lists(st.integers(10, 70_000), min_size=1, max_size=12),
    cuts=st.lists(st.integers(1, 9000), min_size=1, max_size=30),
    order=st.randoms(use_true_random=False),
)
def test_lines_written_in_pieces_by_several_writers_come_out_whole(sizes, cuts, order):
    configure_logging(level="info")
    # each child's records, cut into pieces at arbitrary points, the pieces of all children
    # interleaved: what the kernel does to writes over PIPE_BUF on a shared pipe
    pieces: list[list[tuple[int, str, bytes]]] = [[], [], []]
    for n, size in enumerate(sizes):
        child = n % 3
        data = record(n, size)
        at = 0
        for k, cut in enumerate(cuts):
            if at >= len(data):
                break
            pieces[child].append((child, "stdout", data[at : at + cut * (k + 1)]))
            at += cut * (k + 1)
        if at < len(data):
            pieces[child].append((child, "stdout", data[at:]))
    writes = []
    while any(pieces):
        child = order.choice([c for c in range(3) if pieces[c]])
        writes.append(pieces[child].pop(0))
    out = relayed(writes, 3)
    got = sorted(orjson.loads(line)["n"] for line in out["stdout"])
    assert got == list(range(len(sizes)))
    assert out["stderr"] == []


def test_text_lines_become_records_of_their_stream_and_writer():
    configure_logging(level="info", service_name="amebo")
    out = relayed(
        [
            (0, "stdout", b"plain text from a C library\n"),
            (1, "stderr", b'Traceback (most recent call last):\n  File "x.py", line 1\n'),
            (0, "stdout", b"\n   \n"),  # blank lines are no records
            (1, "stdout", b'{"message":"a record","n":1}\n'),
            (0, "stdout", b"{not json}\n"),
        ],
        2,
    )
    stdout = [orjson.loads(line) for line in out["stdout"]]
    stderr = [orjson.loads(line) for line in out["stderr"]]
    # each writer's lines in its order; writers' lines in the order the relay read them
    mine = [r["message"] for r in stdout if r.get("process.pid") == 1000]
    assert mine == ["plain text from a C library", "{not json}"]
    text = stdout[[r["message"] for r in stdout].index("plain text from a C library")]
    assert text["log.logger"] == "amebo_logging.relay" and text["stream"] == "stdout"
    assert text["log.level"] == "info" and text["service.name"] == "amebo"
    assert {"message": "a record", "n": 1} in stdout and len(stdout) == 3  # a record passes byte for byte
    assert [r["message"] for r in stderr] == ["Traceback (most recent call last):", '  File "x.py", line 1']
    assert {r["log.level"] for r in stderr} == {"error"} and {r["process.pid"] for r in stderr} == {1001}


def test_a_writer_that_dies_mid_line_leaves_a_record_tagged_truncated():
    configure_logging(level="info")
    half = record(7, 9000)[:5000]
    out = relayed([(0, "stdout", record(6, 200)), (0, "stdout", half)], 1)
    whole, cut = (orjson.loads(line) for line in out["stdout"])
    assert whole["n"] == 6
    assert cut["tags"] == ["truncated"] and cut["message"] == half.decode() and cut["log.level"] == "error"


def test_secrets_in_text_lines_are_redacted():
    configure_logging(level="info")
    out = relayed([(0, "stdout", b"connecting to postgres://amebo:hunter2-secret@db:5432/amebo\n")], 1)
    [line] = out["stdout"]
    assert b"hunter2-secret" not in line and b"db:5432" in line


def test_console_lines_pass_through_as_they_are():
    streams = Streams()
    relay = Relay(streams.fds["stdout"], streams.fds["stderr"], wrap_text=False)
    relay.start()
    pipes: Pipes = relay.open_pipes()
    os.write(pipes.out, b"2026-12-02 10:00:00 [info] hello\nunfinished")
    relay.close_pipes(pipes)
    relay.stop(timeout=10)
    assert streams.close()["stdout"] == [b"2026-12-02 10:00:00 [info] hello", b"unfinished"]
