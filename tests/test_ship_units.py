"""The shipper's parts on their own, no network: batching, the offsets owner (acknowledgements
in, commits out), the state store, backoff, the reader."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from amebo_logging.ship.batch import Batch, Batcher, ReadStats
from amebo_logging.ship.bulk import Backoff
from amebo_logging.ship.items import Chunk, Released, Source
from amebo_logging.ship.offsets import Ack, Offsets
from amebo_logging.ship.state import StateError, StateStore, describe_sqlite_error

from .mock_transport import MockTransport, accepted
from .reading import Reading, open_new


def source(path="/var/log/amebo/app.log", uid="00112233445566aa"):
    return Source.make(uid, path)


line_values = st.one_of(
    st.dictionaries(
        st.text(max_size=8), st.one_of(st.integers(-(2**63), 2**63 - 1), st.text(max_size=12), st.none()), max_size=4
    ).map(lambda d: orjson.dumps(d)),
    st.binary(max_size=60).map(lambda b: b.replace(b"\n", b"")),
    st.just(b'{"@timestamp":"2026-11-27T00:00:00Z","a":1}'),
    st.just(b'{ "@timestamp":"2026-11-27T00:00:00Z"}'),  # a blank inside: spliced as it is
    st.just(b' {"@timestamp":"2026-11-27T00:00:00Z"}'),  # a blank before: not spliced
    st.just(b'{"a":"no timestamp"}'),
    st.just(b'{"log.offset":5}'),
    st.just(b"{}"),
    st.just(b""),
    st.just(b'{"a":' * 300 + b"1" + b"}" * 300),  # nested too deep to re-encode
)


@settings(max_examples=200, deadline=None)
@given(
    lines=st.lists(line_values, max_size=30),
    crlf=st.booleans(),
    batch_size=st.integers(1, 7),
    path=st.sampled_from(["/var/log/amebo/app.log", "/logs/100%d%s%%.log"]),  # (operations are %-formatted)
)
def test_every_non_empty_line_becomes_one_valid_create_operation(lines, crlf, batch_size, path):
    src = source(path)
    batches: list[Batch] = []
    stats = ReadStats()
    batcher = Batcher(
        batches.append, host_name="h1", batch_size=batch_size, batch_bytes=1 << 20, max_line_bytes=4000, stats=stats
    )
    end = b"\r\n" if crlf else b"\n"
    data = b"".join(line + end for line in lines)
    if data:
        batcher.add(Chunk(src, 1000, data))
    batcher.flush()

    def content(line: bytes) -> bytes:  # what the shipper sees: the newline and one \r removed
        text = line + end[:-1]
        return text[:-1] if text.endswith(b"\r") else text

    expected, pos = [], 1000
    for line in lines:
        if content(line):
            expected.append((pos, content(line)))
        pos += len(line) + len(end)
    docs = []
    for batch in batches:
        assert len(batch) <= batch_size
        body = batch.body
        ops = body.split(b"\n")
        assert ops[-1] == b"" and len(ops) == 2 * len(batch) + 1
        for i, (action, src_line) in enumerate(zip(ops[0:-1:2], ops[1:-1:2], strict=True)):
            doc = orjson.loads(src_line)  # every source is one valid JSON object
            assert orjson.loads(action) == {"create": {"_id": f"{src.uid}-{doc['log.offset']}"}}
            docs.append((doc, batch.original_line(i)))
    assert [d["log.offset"] for d, _ in docs] == [p for p, _ in expected]
    for (d, original), (_, line) in zip(docs, expected, strict=True):
        assert d["log.file.path"] == src.path and d["host.name"] == "h1" and "@timestamp" in d
        assert original == line  # the dead letter can always give the line back
    assert stats.lines == len(lines) and stats.empty == sum(1 for line in lines if not content(line))
    if batches:  # the read end covers every line, empty ones included
        assert max(b.source_ends.get(src.uid, 0) for b in batches) == 1000 + len(data)
    for before, batch in zip([None, *batches], batches, strict=False):
        if not len(batch):  # an acknowledgement alone: of lines the batch before did not cover
            assert before is None or batch.source_ends[src.uid] > before.source_ends[src.uid]


def test_settled_ends_stop_at_the_first_unsettled_line_of_each_file():
    a, b = source(uid="a" * 16), source(path="/b.log", uid="b" * 16)
    docs = ((a, 0), (b, 0), (a, 10), (b, 10), (a, 20))
    batch = Batch(  # a has an empty line after its last document
        [b"x"] * 5,
        [src for src, _ in docs],
        [off for _, off in docs],
        [off + 10 for _, off in docs],
        {a.uid: 35, b.uid: 20},
    )
    assert batch.settled_ends(bytearray([1, 1, 1, 1, 1])) == {a.uid: (35, True), b.uid: (20, True)}
    assert batch.settled_ends(bytearray([1, 1, 0, 1, 1])) == {a.uid: (10, False), b.uid: (20, True)}
    assert batch.settled_ends(bytearray([0, 0, 1, 1, 1])) == {a.uid: (0, False), b.uid: (0, False)}


# --- the offsets owner: acknowledgements in, commits out -------------------------------------


def offsets_with(tmp_path, *uids, **kwargs):
    """A store and its owner of offsets; each commit written at once (save_every 0: the
    cadence of writes has tests of its own below), unless *kwargs* say otherwise."""
    store = StateStore(tmp_path / "state")
    offsets = Offsets(store, **{"save_every": 0.0, **kwargs})
    made = [open_new(offsets, f"/f{i}.log", 1, i, f"head{i}") for i, _ in enumerate(uids)]
    return store, offsets, made


def test_acknowledgements_commit_only_contiguous_runs(tmp_path):
    store, offsets, (u,) = offsets_with(tmp_path, "a")
    for seq, end in ((1, 100), (2, 200), (3, 300)):
        offsets.handed(u, end)
        offsets.sent(seq, {u: end})
    assert offsets.acknowledge(Ack(2, {u: (200, True)})) == []  # batch 1 is still out: nothing moves
    assert store.get(u).offset == 0 and not offsets.settled(u)
    assert offsets.acknowledge(Ack(1, {u: (100, True)})) == [(u, 200)]  # 1 and 2 together
    assert offsets.acknowledge(Ack(3, {u: (250, False)})) == [(u, 250)]  # a settled prefix of 3 only
    assert store.get(u).offset == 250 and not offsets.settled(u)
    store.close()


def test_handed_out_but_unsent_lines_keep_a_file_unsettled(tmp_path):
    store, offsets, (u,) = offsets_with(tmp_path, "a")
    offsets.handed(u, 50)  # in the batcher, not sent yet
    assert not offsets.settled(u)
    offsets.apply(Released(u))  # the reader let go (a truncation): the lines still get acknowledged
    offsets.sent(1, {u: 50})
    offsets.acknowledge(Ack(1, {u: (50, True)}))
    assert offsets.settled(u) and store.get(u).offset == 50
    store.close()


def test_a_batch_that_carries_nothing_new_of_a_forgotten_file_is_sent(tmp_path):
    """A container file's last read held only a line still being joined: the batch carries
    the file up to where it was settled already.  The file, settled and let go, is no longer
    tracked when that batch is sent (a KeyError once, 1 run in 8 of the CRI test)."""
    store, offsets, (u,) = offsets_with(tmp_path, "a")
    offsets.handed(u, 100)
    offsets.sent(1, {u: 100})
    offsets.handed(u, 100)  # a read that only covered the start of a line being joined
    assert offsets.acknowledge(Ack(1, {u: (100, True)})) == [(u, 100)]
    offsets.apply(Released(u))  # read to its end: settled, so no longer tracked
    offsets.sent(2, {u: 100})  # the batch still filling held the file at 100
    assert offsets.acknowledge(Ack(2, {u: (100, True)})) == [] and offsets.outstanding() == 0
    assert store.get(u).offset == 100 and offsets.settled(u)
    store.close()


@settings(max_examples=150, deadline=None)
@given(data=st.data())
def test_offsets_match_a_model_under_any_acknowledgement_order(tmp_path_factory, data):
    tmp_path = tmp_path_factory.mktemp("offsets")
    nfiles = data.draw(st.integers(1, 3))
    store, offsets, uids = offsets_with(tmp_path, *range(nfiles))
    ends = dict.fromkeys(uids, 0)
    batches = []
    for seq in range(1, data.draw(st.integers(1, 12)) + 1):
        chosen = data.draw(st.lists(st.sampled_from(uids), min_size=1, unique=True))
        carried = {}
        for u in chosen:
            ends[u] += data.draw(st.integers(1, 50))
            offsets.handed(u, ends[u])
            carried[u] = ends[u]
        offsets.sent(seq, carried)
        batches.append((seq, carried))
    order = data.draw(st.permutations(batches))
    acked: dict[int, dict] = {}
    for seq, carried in order:
        outcome = {u: (end, True) for u, end in carried.items()}
        offsets.acknowledge(Ack(seq, outcome))
        acked[seq] = outcome
        for u in uids:  # the model: the end of the longest run of acknowledged batches, in order
            expected = 0
            for s, c in batches:
                if u not in c:
                    continue
                if s not in acked:
                    break
                expected = c[u]
            assert store.get(u).offset == expected
    assert all(offsets.settled(u) for u in uids)
    store.close()


# --- the state store ----------------------------------------------------------------------------


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


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_offsets_are_written_at_most_every_save_every_seconds_and_all_at_the_end(tmp_path):
    """As Filebeat's registry flush: the first acknowledgement after a quiet spell is written
    at once; those within save_every of a write wait for the next (the reader resumes from
    them meanwhile); one write carries the offsets and counts of all of them."""
    clock = Clock()
    store, offsets, (u, v) = offsets_with(tmp_path, "a", "b", save_every=0.2, clock=clock)
    for seq, (uid, end) in enumerate(((u, 100), (u, 200), (v, 50), (u, 300)), start=1):
        offsets.handed(uid, end)
        offsets.sent(seq, {uid: end})
    offsets.acknowledge(Ack(1, {u: (100, True)}, {"delivered": 1}))
    assert store.get(u).offset == 100 and offsets.commits == 1  # written at once
    clock.now += 0.05
    offsets.acknowledge(Ack(2, {u: (200, True)}, {"delivered": 2}))
    offsets.acknowledge(Ack(3, {v: (50, True)}, {"delivered": 4}))
    assert store.get(u).offset == 100 and store.get(v).offset == 0  # not yet written...
    assert offsets.committed(u) == 200 and offsets.committed(v) == 50  # ... but committed
    offsets.apply(Released(v))  # settled and let go: still resumed from where it was committed
    assert offsets.resume("head1").offset == 50 and offsets.committed(v) == 50
    clock.now += 0.1
    offsets.save()  # 0.15 s after the last write: not due
    assert store.get(u).offset == 100 and offsets.commits == 1
    clock.now += 0.1
    offsets.save()  # due: one write for both files and all the counts
    assert (store.get(u).offset, store.get(v).offset, offsets.commits) == (200, 50, 2)
    assert store.totals()["delivered"][0] == 7
    clock.now += 0.01
    offsets.acknowledge(Ack(4, {u: (300, True)}, {"delivered": 8}))
    assert store.get(u).offset == 200
    offsets.save(now=True)  # the end of a run
    assert store.get(u).offset == 300 and store.totals()["delivered"][0] == 15
    offsets.save(now=True)  # nothing new: nothing written
    assert offsets.commits == 3
    store.close()


def test_offsets_that_could_not_be_written_are_kept_for_the_next_write(tmp_path):
    clock = Clock()
    store, offsets, (u,) = offsets_with(tmp_path, "a", save_every=0.2, clock=clock)
    offsets.handed(u, 100)
    offsets.sent(1, {u: 100})
    real_commit, failures = store.commit, []

    def full_disk(*args, **kwargs):
        if not failures:
            failures.append(1)
            raise StateError("database or disk is full", "full")
        real_commit(*args, **kwargs)

    store.commit = full_disk
    with pytest.raises(StateError, match="disk is full"):
        offsets.acknowledge(Ack(1, {u: (100, True)}, {"delivered": 1}))
    assert store.get(u).offset == 0 and offsets.committed(u) == 100
    offsets.save(now=True)
    assert store.get(u).offset == 100 and store.totals()["delivered"][0] == 1
    store.close()


def test_totals_are_committed_with_the_offsets_and_a_version_1_database_is_upgraded(tmp_path):
    d = tmp_path / "s"
    store = StateStore(d)
    offsets = Offsets(store, save_every=0.0)  # (each acknowledgement written at once)
    rec = store.get(open_new(offsets, "/x.log", 1, 2, "head", 100))
    offsets.sent(1, {rec.uid: 60})
    offsets.sent(2, {rec.uid: 100})
    # batch 2 settles first: its counts are kept at once, its offset waits for batch 1
    assert offsets.acknowledge(Ack(2, {rec.uid: (100, True)}, {"delivered": 3, "failure_store": 1})) == []
    assert offsets.acknowledge(Ack(1, {rec.uid: (60, True)}, {"delivered": 5})) == [(rec.uid, 100)]
    totals = store.totals()
    assert {k: v[0] for k, v in totals.items()} == {"delivered": 8, "failure_store": 1}
    store.close()
    # a database written by the first release (schema 1, no totals) is upgraded when opened
    conn = sqlite3.connect(d / "state.sqlite3")
    conn.executescript("DROP TABLE totals; UPDATE meta SET value = '1' WHERE key = 'schema_version';")
    conn.close()
    assert StateStore.in_memory_copy(d).totals() == {}  # a dry run reads it, upgrading only its copy
    again = StateStore(d)
    assert again.latest("head").offset == 100 and again.totals() == {}
    again.commit([], {"dead_lettered": 2})
    assert again.totals()["dead_lettered"][0] == 2
    again.close()
    version = sqlite3.connect(d / "state.sqlite3").execute("SELECT value FROM meta").fetchone()[0]
    assert version == "2"


def test_one_shipper_per_state_directory(tmp_path):
    first = StateStore(tmp_path / "s")
    with pytest.raises(StateError, match=rf"another amebo-logship \(PID {os.getpid()}\) is using") as err:
        StateStore(tmp_path / "s")
    assert err.value.kind == "locked"
    first.close()
    StateStore(tmp_path / "s").close()  # the lock went with the first store


def test_state_refuses_a_missing_database_it_once_had(tmp_path):
    StateStore(tmp_path / "s").close()
    (tmp_path / "s" / "state.sqlite3").unlink()
    with pytest.raises(StateError, match=r"missing.*reset-state --state-dir"):
        StateStore(tmp_path / "s")


def test_a_database_created_half_way_is_completed(tmp_path):
    d = tmp_path / "s"
    d.mkdir()
    sqlite3.connect(d / "state.sqlite3").close()  # the file exists, the disk filled before the schema
    store = StateStore(d)
    assert store.all() == []
    store.close()


def test_sqlite_errors_are_named():
    full = sqlite3.OperationalError("database or disk is full")
    full.sqlite_errorname = "SQLITE_FULL"
    err = describe_sqlite_error(full, Path("/s"), Path("/s/db"))
    assert err.kind == "full" and str(err).startswith("disk full under /s")
    bad = sqlite3.DatabaseError("file is not a database")
    bad.sqlite_errorname = "SQLITE_NOTADB"
    assert describe_sqlite_error(bad, Path("/s"), Path("/s/db")).kind == "corrupt"


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

    body = {
        "errors": True,
        "took": 3,
        "items": [{"create": {"status": 201, "_id": "a"}}, {"create": {"status": 409, "error": {"type": "x"}}}],
    }
    assert apply_filter_path(body, "errors,items.*.status,items.*.error") == {
        "errors": True,
        "items": [{"create": {"status": 201}}, {"create": {"status": 409, "error": {"type": "x"}}}],
    }


# --- the reader ---------------------------------------------------------------------------------


def reading_for(tmp_path, pattern="*.log", **kwargs):
    logs = tmp_path / "logs"
    logs.mkdir(exist_ok=True)
    return logs, Reading([str(logs / pattern)], tmp_path / "state", **kwargs)


def test_a_deleted_file_whose_last_line_never_ends_is_let_go(tmp_path):
    logs, reading = reading_for(tmp_path, close_inactive=0.0)
    path = logs / "a.log"
    path.write_bytes(b'{"a":1}\n{"unfinished":')
    reading.scan()
    chunks = reading.poll()
    assert [c.data for c in chunks] == [b'{"a":1}\n']
    reading.acknowledge(chunks)
    path.unlink()
    reading.scan()
    reading.poll()  # reaches the end through the open descriptor
    reading.retire()
    assert not reading.discovery.open_files()
    assert (
        "info",
        "file_forgotten",
        {"log.file.path": str(path), "unfinished_line_bytes": len(b'{"unfinished":')},
    ) in reading.notices
    assert reading.store.all() == []  # forgotten by the owner of offsets
    assert reading.discovery.phases() == {}  # and by the reader: its inode may come back as another file
    reused = logs / "b.log"  # (filesystems hand a freed inode out again at once, often)
    reused.write_bytes(b'{"b":1}\n')
    reading.scan()
    assert [c.data for c in reading.poll()] == [b'{"b":1}\n']
    reading.close()


def test_rewritten_under_a_paused_reader_is_noticed_at_the_next_read(tmp_path):
    """copytruncate while reading was paused: the file regrew past the read position."""
    logs, reading = reading_for(tmp_path, pattern="app.log*")
    path = logs / "app.log"
    old = b"".join(b'{"old":%d}\n' % i for i in range(100))
    path.write_bytes(old)
    reading.scan()
    first = reading.poll(max_bytes=300)  # a part of it, then reading pauses
    reading.acknowledge(first)
    read_to = first[-1].offset + len(first[-1].data)
    (logs / "app.log.1").write_bytes(old)  # logrotate's copy...
    with open(path, "r+b") as f:  # ...then the truncation, and the file regrows past the position
        f.truncate(0)
        f.write(b"".join(b'{"new":%d}\n' % i for i in range(200)))
    reading.scan()
    chunks = []
    for _ in range(10):
        chunks += reading.poll()
    by_file = {}
    for c in chunks:
        by_file.setdefault(c.source.path, []).append(c)
    copy = by_file[str(logs / "app.log.1")]
    assert copy[0].offset == read_to  # the copy continues exactly where the reading stopped
    assert b"".join(c.data for c in copy) == old[read_to:]
    live = by_file[str(path)]
    assert live[0].offset == 0 and b"".join(c.data for c in live).startswith(b'{"new":0}\n')
    assert live[0].source.uid != copy[0].source.uid
    reading.close()


def test_never_more_descriptors_than_the_limit(tmp_path):
    logs, reading = reading_for(tmp_path, once=True, max_open=4)
    for i in range(30):
        (logs / f"f{i:02d}.log").write_bytes(b'{"f":%d}\n' % i)
    reading.scan()
    seen = set()
    for _ in range(40):
        chunks = reading.poll()
        assert len(reading.discovery.open_files()) <= 4
        reading.acknowledge(chunks)
        seen |= {c.source.path for c in chunks}
        reading.retire()
    assert len(seen) == 30 and reading.discovery.all_read()
    reading.close()


def test_a_busy_file_does_not_starve_the_others(tmp_path):
    logs, reading = reading_for(tmp_path)
    with open(logs / "a-busy.log", "wb") as f:
        f.write((b'{"x":"' + b"a" * 1000 + b'"}\n') * 20_000)  # 20 MB waiting
    (logs / "b-quiet.log").write_bytes(b'{"quiet":1}\n')
    reading.scan()
    seen = set()
    for _ in range(2):  # a budget of one chunk per poll: the quiet file must come up at once
        seen |= {c.source.path for c in reading.poll(max_bytes=1 << 20)}
    assert str(logs / "b-quiet.log") in seen
    reading.close()


def test_a_crashed_sender_stops_the_run_instead_of_hanging(tmp_path):
    from amebo_logging import get_logger
    from amebo_logging.ship.shipper import ShipOptions, Shipper

    def broken(request):
        raise RuntimeError("a bug in the sender")

    logs = tmp_path / "logs"
    logs.mkdir()
    (logs / "a.log").write_bytes(b"".join(b'{"n":%d}\n' % i for i in range(50)))
    options = ShipOptions(
        patterns=[str(logs / "*.log")], state_dir=tmp_path / "state", batch_size=5, max_in_flight=1, once=True
    )
    shipper = Shipper(options, lambda: MockTransport(broken), get_logger("test"))
    with pytest.raises(RuntimeError, match="sending thread stopped unexpectedly"):
        shipper.run()


@pytest.mark.slow
def test_a_single_line_at_low_load_is_sent_without_waiting_for_the_flush_interval(tmp_path):
    """Latency first: an idle sender takes a partial batch at once (--flush-interval 30 s)."""
    import threading
    import time

    from amebo_logging import get_logger
    from amebo_logging.ship.shipper import ShipOptions, Shipper

    sent: list[float] = []

    def scripted(request):  # the transport seam: answers like Elasticsearch, records when
        sent.append(time.monotonic())
        return accepted(request)

    logs = tmp_path / "logs"
    logs.mkdir()
    path = logs / "a.log"
    path.write_bytes(b'{"n":0}\n')
    options = ShipOptions(
        patterns=[str(logs / "*.log")], state_dir=tmp_path / "state", flush_interval=30.0, scan_interval=0.05
    )
    shipper = Shipper(options, lambda: MockTransport(scripted), get_logger("test"))
    runner = threading.Thread(target=shipper.run)
    runner.start()
    try:
        deadline = time.monotonic() + 10
        while not sent and time.monotonic() < deadline:
            time.sleep(0.005)
        assert len(sent) == 1
        written = time.monotonic()
        with open(path, "ab") as f:
            f.write(b'{"n":1}\n')
        while len(sent) < 2 and time.monotonic() < deadline:
            time.sleep(0.005)
        assert len(sent) == 2 and sent[1] - written < 1.0  # not the 30 s flush interval
    finally:
        shipper.request_stop()
        runner.join(10)
    assert not runner.is_alive()


@pytest.mark.parametrize(
    ("path", "pattern", "skipped"),
    [
        ("/var/log/amebo/x.tmp", "*.tmp", True),  # a base name, wherever the file is
        ("/var/log/amebo/x.log", "*.tmp", False),
        ("/var/log/amebo/archive/x.log", "archive/*.log", True),  # the path's last parts
        ("/var/log/amebo/x.log", "archive/*.log", False),
        ("/var/log/amebo/archive/x.log", "./archive/*.log", True),
        ("/var/log/amebo/x.log", "/var/log/amebo/*.log", True),  # absolute: the whole path
        ("/srv/amebo/x.log", "/var/log/amebo/*.log", False),
        ("/var/log/amebo/.hidden/x.log", ".hidden/*", True),
    ],
)
def test_exclude_patterns_never_depend_on_the_working_directory(path, pattern, skipped):
    from amebo_logging.ship.discover import excluded

    assert excluded(path, pattern) is skipped


def test_the_progress_bar_says_when_shipping_waits_for_elasticsearch():
    import time as _time

    from amebo_logging.ship.bulk import Attempt, DeliveryStats
    from amebo_logging.ship.report import waiting_text

    d = DeliveryStats()
    now = _time.time()
    refused = ("connection", "ConnectionError: Connection refused")
    d.add(Attempt(seconds=0.01, at=now - 40, status=None, ok=False, failure=refused))
    d.add(Attempt(seconds=0.01, at=now - 5, status=None, ok=False, failure=("http", "HTTP 503: unavailable")))
    assert d.failing and d.failing_since == now - 40  # since the first failure, the last error
    line = waiting_text(d)
    assert "waiting for Elasticsearch for 40s: HTTP 503: unavailable" in line and "docs/s" not in line
    d.add(Attempt(seconds=0.01, at=now, status=200, ok=True))
    assert not d.failing and d.failing_since is None
