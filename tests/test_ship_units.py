"""The shipper's parts on their own: batching, contiguous commits, the state store, backoff."""

from __future__ import annotations

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from amebo_logging.ship.batch import Batch, Batcher, ReadStats
from amebo_logging.ship.bulk import Backoff
from amebo_logging.ship.shipper import commit_offsets
from amebo_logging.ship.state import StateError, StateStore
from amebo_logging.ship.tail import Chunk, TrackedFile


def tracked(path="/var/log/amebo/app.log", uid="00112233445566aa"):
    return TrackedFile(path=path, fd=-1, dev=1, ino=2, head_hash="h", generation=0, uid=uid,
                       read_pos=0, line_start=0)


line_values = st.one_of(
    st.dictionaries(st.text(max_size=8), st.one_of(st.integers(-(2**63), 2**63 - 1), st.text(max_size=12), st.none()), max_size=4)
    .map(lambda d: orjson.dumps(d)),
    st.binary(max_size=60).map(lambda b: b.replace(b"\n", b"")),
    st.just(b'{"@timestamp":"2026-11-27T00:00:00Z","a":1}'),
    st.just(b'{"log.offset":5}'),
    st.just(b"{}"),
    st.just(b""),
)


@settings(max_examples=200, deadline=None)
@given(lines=st.lists(line_values, max_size=30), crlf=st.booleans(), batch_size=st.integers(1, 7))
def test_every_non_empty_line_becomes_one_valid_create_operation(lines, crlf, batch_size):
    tf = tracked()
    batches: list[Batch] = []
    stats = ReadStats()
    batcher = Batcher(batches.append, host_name="h1", batch_size=batch_size, batch_bytes=1 << 20,
                      max_line_bytes=40, stats=stats)
    end = b"\r\n" if crlf else b"\n"
    data = b"".join(line + end for line in lines)
    if data:
        batcher.add(Chunk(tf, 1000, data))
    batcher.flush()
    def content(line: bytes) -> bytes:  # what the shipper sees: the newline and one \r removed
        text = line + end[:-1]
        return text[:-1] if text.endswith(b"\r") else text

    offsets, pos = [], 1000
    for line in lines:
        if content(line):
            offsets.append(pos)
        pos += len(line) + len(end)
    docs = []
    for batch in batches:
        assert len(batch) <= batch_size
        body = batch.body()
        ops = body.split(b"\n")
        assert ops[-1] == b"" and len(ops) == 2 * len(batch) + 1
        for action, source in zip(ops[0:-1:2], ops[1:-1:2]):
            doc = orjson.loads(source)  # every source is one valid JSON object
            assert orjson.loads(action) == {"create": {"_id": f"{tf.uid}-{doc['log.offset']}"}}
            docs.append(doc)
    assert [d["log.offset"] for d in docs] == offsets
    for d in docs:
        assert d["log.file.path"] == tf.path and d["host.name"] == "h1" and "@timestamp" in d
    assert stats.lines == len(lines) and stats.empty == sum(1 for line in lines if not content(line))
    if batches:  # the read end covers every line, empty ones included
        assert max(b.file_ends.get(tf, 0) for b in batches) == 1000 + len(data)


def test_commit_stops_at_the_first_unsettled_line_of_each_file():
    a, b = tracked(uid="a" * 16), tracked(path="/b.log", uid="b" * 16)
    batch = Batch()
    for tf, off in ((a, 0), (b, 0), (a, 10), (b, 10), (a, 20)):
        batch.ops.append(b"x")
        batch.files.append(tf)
        batch.offsets.append(off)
        batch.ends.append(off + 10)
    batch.file_ends = {a: 35, b: 20}  # a has an empty line after its last document
    assert commit_offsets(batch, bytearray([1, 1, 1, 1, 1])) == {a: 35, b: 20}
    assert commit_offsets(batch, bytearray([1, 1, 0, 1, 1])) == {a: 10, b: 20}  # a later ack never skips a gap
    assert commit_offsets(batch, bytearray([0, 0, 1, 1, 1])) == {}


def test_state_never_moves_back_and_survives_reopening(tmp_path):
    store = StateStore(tmp_path / "s")
    rec = store.register("/x.log", 1, 2, "head", 0, 100)
    store.commit([(rec.uid, 50, "/x.log", 100)])
    store.commit([(rec.uid, 20, "/x.log", 100)])  # an older batch's ack arriving late
    store.close()
    again = StateStore(tmp_path / "s")
    assert again.latest("head").offset == 50
    assert again.register("/x.log", 1, 2, "head", 0, 100).offset == 50  # registering again changes nothing
    again.close()


def test_state_refuses_a_missing_database_it_once_had(tmp_path):
    StateStore(tmp_path / "s").close()
    (tmp_path / "s" / "state.sqlite3").unlink()
    with pytest.raises(StateError, match="missing"):
        StateStore(tmp_path / "s")


def test_backoff_grows_with_jitter_and_is_capped():
    backoff = Backoff(0.5, 4.0)
    delays = [backoff.next_delay() for _ in range(10)]
    for i, d in enumerate(delays):
        ceiling = min(4.0, 0.5 * 2**i)
        assert ceiling / 2 <= d <= ceiling
    assert len(set(delays)) > 1
    backoff.reset()
    assert backoff.next_delay() <= 0.5


def test_fake_server_filter_path():
    from .fake_es import apply_filter_path

    body = {"errors": True, "took": 3, "items": [{"create": {"status": 201, "_id": "a"}},
                                                 {"create": {"status": 409, "error": {"type": "x"}}}]}
    assert apply_filter_path(body, "errors,items.*.status,items.*.error") == {
        "errors": True, "items": [{"create": {"status": 201}}, {"create": {"status": 409, "error": {"type": "x"}}}]}


def test_a_deleted_file_whose_last_line_never_ends_is_let_go(tmp_path):
    from amebo_logging.ship.tail import Tailer

    logs = tmp_path / "logs"
    logs.mkdir()
    path = logs / "a.log"
    path.write_bytes(b'{"a":1}\n{"unfinished":')
    tailer = Tailer([str(logs / "*.log")], StateStore(tmp_path / "state"), close_inactive=0.0)
    tailer.scan()
    chunks = tailer.poll()
    assert [c.data for c in chunks] == [b'{"a":1}\n']
    [tf] = tailer.files.values()
    tf.committed = tf.emitted  # as if the first line was acknowledged
    path.unlink()
    tailer.scan()
    tailer.poll()  # reaches the end through the open descriptor
    tailer.retire()
    assert not tailer.files
    assert ("file_forgotten", {"log.file.path": str(path), "unfinished_line_bytes": len(b'{"unfinished":')}) in tailer.events


def test_a_crashed_sender_stops_the_run_instead_of_hanging(tmp_path):
    from amebo_logging import get_logger
    from amebo_logging.ship.shipper import ShipOptions, Shipper

    class BrokenClient:
        def bulk(self, **kwargs):
            raise RuntimeError("a bug in the sender")

    logs = tmp_path / "logs"
    logs.mkdir()
    (logs / "a.log").write_bytes(b"".join(b'{"n":%d}\n' % i for i in range(50)))
    options = ShipOptions(patterns=[str(logs / "*.log")], state_dir=tmp_path / "state", batch_size=5,
                          max_in_flight=1, once=True)
    shipper = Shipper(options, BrokenClient(), get_logger("test"))
    with pytest.raises(RuntimeError, match="sending thread stopped unexpectedly"):
        shipper.run()


def test_a_busy_file_does_not_starve_the_others(tmp_path):
    from amebo_logging.ship.tail import Tailer

    logs = tmp_path / "logs"
    logs.mkdir()
    (logs / "a-busy.log").write_bytes(b'{"x":"' + b"a" * 100 + b'"}\n' * 1)  # first line, then a lot more
    with open(logs / "a-busy.log", "ab") as f:
        f.write((b'{"x":"' + b"a" * 1000 + b'"}\n') * 20_000)  # 20 MB waiting
    (logs / "b-quiet.log").write_bytes(b'{"quiet":1}\n')
    tailer = Tailer([str(logs / "*.log")], StateStore(tmp_path / "state"))
    tailer.scan()
    seen = set()
    for _ in range(2):  # a budget of one chunk per poll: the quiet file must come up at once
        seen |= {c.file.path for c in tailer.poll(max_bytes=1 << 20)}
    assert str(logs / "b-quiet.log") in seen
