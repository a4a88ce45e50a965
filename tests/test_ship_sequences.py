"""Property: whatever happens, in whatever order (appends, rotations of each kind, outages,
kill -9 and restart), with several bulk requests in flight answered out of order, after a
final drain every written line is in Elasticsearch exactly once.

Each example runs the real ``amebo-logship`` as a subprocess against the test cluster; the
operations are applied as fast as the test can, with no waits between them, so the shipper
meets them at whatever moment they happen to fall.
"""

from __future__ import annotations

import os
import random
import shutil
import signal

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from .fake_es import FakeElasticsearch
from .far_end import assert_exactly_once, tally, wait_docs
from .shipper_proc import FAST, ShipperProcess, record

pytestmark = pytest.mark.slow

operations = st.lists(
    st.one_of(
        st.tuples(st.just("append"), st.integers(1, 400)),
        st.tuples(st.just("rotate"), st.sampled_from(["rename", "copytruncate"])),
        st.tuples(st.just("outage"), st.booleans()),
        st.tuples(st.just("kill"), st.just(0)),
    ),
    min_size=3,
    max_size=12,
)


class World:
    """The log directory, the writer, the cluster and the shipper of one example."""

    def __init__(self, base, es: FakeElasticsearch) -> None:
        self.logs = base / "logs"
        self.logs.mkdir()
        self.state = base / "state"
        self.es = es
        self.path = self.logs / "app.log"
        self.fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        self.written = 0
        self.rotations = 0
        self.proc: ShipperProcess | None = None

    def start(self) -> None:
        self.proc = ShipperProcess(
            [
                "ship",
                str(self.logs / "app.log*"),
                "--es-url",
                self.es.url,
                "--state-dir",
                str(self.state),
                "--wait-for-files",
                *FAST,
                "--batch-size",
                "100",
                "--max-in-flight",
                "8",
            ]
        )

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.signal(signal.SIGKILL)
        self.proc.wait()

    def append(self, n: int) -> None:
        os.write(self.fd, b"".join(record(i) for i in range(self.written, self.written + n)))
        self.written += n

    def rotate(self, kind: str) -> None:
        self.rotations += 1
        rotated = self.logs / f"app.log.{self.rotations}"
        if kind == "rename":
            os.rename(self.path, rotated)
            os.close(self.fd)
            self.fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        else:  # copytruncate: nothing is written between the copy and the truncation
            shutil.copyfile(self.path, rotated)
            os.truncate(self.path, 0)

    def close(self) -> None:
        os.close(self.fd)
        if self.proc is not None:
            self.proc.kill()


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=operations, seed=st.integers(0, 2**32 - 1))
def test_every_line_exactly_once_after_any_sequence(tmp_path_factory, ops, seed):
    base = tmp_path_factory.mktemp("sequence")
    delays = random.Random(seed)
    with FakeElasticsearch() as es:
        es.bulk_delay = lambda: delays.uniform(0, 0.02)  # answers come back out of order
        world = World(base, es)
        world.start()
        try:
            world.append(50)
            for op, arg in ops:
                if op == "append":
                    world.append(arg)
                elif op == "rotate":
                    world.rotate(arg)
                elif op == "outage":
                    if arg and es.running:
                        es.stop()
                    elif not arg and not es.running:
                        es.start()
                else:
                    world.kill()
                    world.start()
            world.append(1)  # every file ends with a complete line
            if not es.running:
                es.start()
            try:
                wait_docs(es, world.written, timeout=60)
            except AssertionError:
                lost, doubled = tally(es, world.written)
                raise AssertionError(
                    f"{ops}: {len(lost)} lost, {len(doubled)} doubled\n" + world.proc.stderr_text()[-3000:]
                ) from None
            world.proc.signal(signal.SIGTERM)  # a graceful stop: whatever it still holds is sent first
            assert world.proc.wait() == 0
            assert_exactly_once(es, world.written)
        finally:
            world.close()
