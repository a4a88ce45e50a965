"""Sending, in-process through the transport seam (no server): per-item outcomes, retries,
the 413 split, what stops a run; the adaptive concurrency limit; and a shipper with several
requests in flight whose completions come back out of order."""

from __future__ import annotations

import random
import threading
import tracemalloc
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from amebo_logging import get_logger
from amebo_logging.ship.batch import Batch, Batcher, ReadStats
from amebo_logging.ship.bulk import (
    DEAD_LETTERED,
    DELIVERED,
    DUPLICATE,
    FAILURE_STORE,
    Attempt,
    Backoff,
    BulkSender,
    DeliveryStats,
)
from amebo_logging.ship.cli import connection_options
from amebo_logging.ship.concurrency import AdaptiveConcurrency
from amebo_logging.ship.items import Chunk, Source
from amebo_logging.ship.pack import worth_gzipping
from amebo_logging.ship.params import COMPRESSION
from amebo_logging.ship.shipper import ShipOptions, Shipper, Summary
from amebo_logging.ship.state import StateStore
from amebo_logging.ship.transport import Answer

from .mock_transport import MockTransport, Request, accepted, items, refused

SRC = Source.make("00112233445566aa", "/var/log/amebo/app.log")
SRC2 = Source.make("ffeeddccbbaa0011", "/var/log/amebo/other.log")


def batch_of(n: int, start: int = 0):
    batches = []
    batcher = Batcher(
        batches.append, host_name="h", batch_size=10_000, batch_bytes=1 << 30, max_line_bytes=1 << 20, stats=ReadStats()
    )
    data = b"".join(b'{"@timestamp":"2026-12-02T00:00:00Z","seq":%d}\n' % i for i in range(start, start + n))
    batcher.add(Chunk(SRC, 0, data))
    batcher.flush()
    [batch] = batches
    return batch


class DeadLetters:
    where = "memory"

    def __init__(self, fail: bool = False) -> None:
        self.entries: list[tuple[int, int]] = []
        self.fail = fail

    def record(self, batch, refused_docs):
        if self.fail:
            raise OSError(28, "No space left on device")
        self.entries += [(i, status) for i, status, _ in refused_docs]


def sender_for(transport, dead=None):
    attempts: list[Attempt] = []
    problems: list[tuple[str, str, dict]] = []
    sender = BulkSender(
        transport,
        "logs-amebo-default",
        dead if dead is not None else DeadLetters(),
        report=attempts.append,
        backoff=Backoff(0.0001, 0.001),
        hard_stop=threading.Event(),
        on_problem=lambda level, event, fields: problems.append((level, event, fields)),
        where="http://es:9200",
    )
    return sender, attempts, problems


def test_the_common_answer_settles_every_document_in_one_request():
    transport = MockTransport(accepted)
    sender, attempts, _ = sender_for(transport)
    outcome = sender.deliver(batch_of(50))
    assert list(outcome.settled) == [DELIVERED] * 50 and outcome.fatal is None
    [attempt] = attempts
    assert attempt.ok and attempt.settled == {"delivered": 50} and not attempt.pressure
    assert len(transport.requests) == 1 and len(transport.requests[0]) == 50


def test_a_request_in_flight_holds_a_few_bytes_a_document_beside_its_batch():
    """What a sender holds while its request is out, beyond the batch itself: at 128 requests in
    flight, an object per document (a list of 5,000 indices: 170 KB) was 22 MB of the shipper's
    memory."""
    batch = batch_of(5000)
    held: list[int] = []

    class Measuring:
        def send(self, body: bytes, target: str, *, gzipped: bool = False) -> Answer:
            held.append(tracemalloc.get_traced_memory()[0] - before)
            return accepted(Request(body, target))

        def close(self) -> None:
            pass

    sender, _, _ = sender_for(Measuring())
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        outcome = sender.deliver(batch)
    finally:
        tracemalloc.stop()
    assert list(outcome.settled) == [DELIVERED] * 5000
    assert held[0] < 8 * 5000, held  # (the settled codes, a byte each, and a little more)


def test_each_item_is_settled_by_its_own_status_and_only_the_retryable_are_sent_again():
    answers = iter(
        [
            items(
                201,
                409,
                429,
                (400, {"type": "document_parsing_exception", "reason": "bad"}),
                503,
                201,
                failure_store={5},
            ),
            items(201, 201),  # the two retried: the 429 and the 503
        ]
    )
    transport = MockTransport(lambda request: next(answers))
    dead = DeadLetters()
    sender, attempts, problems = sender_for(transport, dead)
    outcome = sender.deliver(batch_of(6))
    assert list(outcome.settled) == [DELIVERED, DUPLICATE, DELIVERED, DEAD_LETTERED, DELIVERED, FAILURE_STORE]
    assert dead.entries == [(3, 400)]
    first, second = transport.requests
    assert second.ids == [first.ids[2], first.ids[4]]  # only what may succeed later
    assert attempts[0].retries == {"429": 1, "5xx": 1} and attempts[0].pressure  # an item 429 is push-back
    assert attempts[0].settled == {"delivered": 1, "failure_store": 1, "dead_lettered": 1, "duplicates": 1}
    assert attempts[1].settled == {"delivered": 2}
    assert outcome.counts() == {"delivered": 3, "failure_store": 1, "dead_lettered": 1, "duplicates": 1}
    assert {event for _, event, _ in problems} >= {"documents_in_failure_store", "documents_dead_lettered"}


def test_a_failed_request_is_retried_whole_and_says_whether_it_was_push_back():
    answers = iter([refused(503, "unavailable_shards_exception"), refused(None, reason="refused"), accepted])
    transport = MockTransport(lambda r: a(r) if callable(a := next(answers)) else a)
    stats = DeliveryStats()
    sender, attempts, _ = sender_for(transport)
    outcome = sender.deliver(batch_of(10))
    assert outcome.counts() == {"delivered": 10} and len(transport.requests) == 3
    assert [(a.status, a.pressure, a.retries) for a in attempts] == [
        (503, True, {"5xx": 1}),
        (None, False, {"connection": 1}),  # no answer: not a sign of load, only of an outage
        (200, False, {}),
    ]
    for a in attempts:
        stats.add(a)
    assert stats.retries["5xx"] == 1 and stats.retries["connection"] == 1 and stats.delivered == 10
    assert stats.bulk_requests == 3 and not stats.failing


def test_with_hand_back_push_back_hands_back_what_is_left_and_a_later_call_settles_it():
    """A sender made for the shipper, whose loop owns the concurrency limit: it does not retry
    after push-back itself (429 for the request, or for some of its items), it hands back
    what is left; given that back, it sends only that."""
    answers = iter([items(201, 429, 201, 429), refused(429), None])
    transport = MockTransport(lambda request: next(answers) or accepted(request))
    sender, attempts, _ = sender_for(transport)
    sender.hand_back = True
    batch = batch_of(4)
    first = sender.deliver(batch)
    assert list(first.settled) == [DELIVERED, 0, DELIVERED, 0] and first.again == ([1, 3],) and first.fatal is None
    second = sender.deliver(batch, first.settled, first.again)
    assert list(second.settled) == [DELIVERED, 0, DELIVERED, 0] and second.again == ([1, 3],)
    third = sender.deliver(batch, second.settled, second.again)
    assert list(third.settled) == [DELIVERED] * 4 and third.again == ()
    # (a value handed on: what a call was given stays as it was, so what the loop counts of it
    # at dispatch and when it comes back agree)
    assert list(second.settled) == [DELIVERED, 0, DELIVERED, 0]
    assert [len(r) for r in transport.requests] == [4, 2, 2]
    assert [a.pressure for a in attempts] == [True, True, False]


def test_a_timeout_is_push_back():
    answers = iter([refused(None, reason="ConnectionTimeout", timeout=True), accepted])
    transport = MockTransport(lambda r: a(r) if callable(a := next(answers)) else a)
    sender, attempts, _ = sender_for(transport)
    assert sender.deliver(batch_of(3)).counts() == {"delivered": 3}
    assert attempts[0].pressure and not attempts[1].pressure


def test_413_splits_until_the_requests_fit_and_a_document_too_big_alone_is_dead_lettered():
    big = batch_of(8)
    limit = len(big.body) // 3  # a proxy's body limit

    def proxy(request: Request) -> Answer:
        if len(request.body) > limit:
            return refused(413, reason="HTTP 413: Request Entity Too Large")
        return accepted(request)

    transport = MockTransport(proxy)
    sender, attempts, problems = sender_for(transport)
    outcome = sender.deliver(big)
    assert outcome.counts() == {"delivered": 8}
    sent = [r for r in transport.requests if len(r.body) <= limit]
    assert sorted(i for r in sent for i in r.ids) == sorted(Request(big.body, "").ids)  # each document once
    assert sender.max_body is not None and sender.max_body < len(big.body)
    assert any(event == "bulk_request_too_large" for _, event, _ in problems)
    # alone over the limit: dead-lettered with the reason, the rest delivered
    dead = DeadLetters()
    sender, _, _ = sender_for(MockTransport(lambda r: refused(413) if len(r) == 1 and b'"seq":1}' in r.body
                                            else (refused(413) if len(r) > 1 else accepted(r))), dead)  # fmt: skip
    outcome = sender.deliver(batch_of(2))
    assert list(outcome.settled) == [DELIVERED, DEAD_LETTERED] and dead.entries == [(1, 413)]


# --- gzip: packed batches ------------------------------------------------------------------------


def test_a_packed_batch_is_a_new_value_holding_the_gzip_stream_of_the_same_operations():
    batch = batch_of(300)
    packed = batch.packed()
    assert packed.gzipped and not batch.gzipped and batch.body_of() == packed.body_of()  # the old one unchanged
    assert zlib.decompress(packed.body, 31) == batch.body and packed.nbytes * 5 < batch.nbytes
    everyone = list(range(300))
    assert packed.request(everyone) == (packed.body, True, batch.nbytes)  # whole: as held, gzipped
    body, gzipped, size = packed.request([3, 7])  # some (a retry, a split): plain
    assert (body, gzipped, size) == (batch.body_of([3, 7]), False, len(batch.body_of([3, 7])))
    assert [packed.document_id(i) for i in (0, 299)] == [batch.document_id(i) for i in (0, 299)]
    assert packed.original_line(5) == batch.original_line(5) and packed.op(9) == batch.op(9)
    settled = bytearray(300)
    settled[:10] = b"\x01" * 10
    assert packed.settled_ends(settled) == batch.settled_ends(settled) and len(packed) == 300
    # its positions held gzipped too (held by the dozen, they would be 40% of it), the same values
    assert packed.offsets[299] == batch.offsets[299] and packed.ends[0] == batch.ends[0]
    assert list(packed.offsets) == list(batch.offsets) and list(packed.ends) == list(batch.ends)
    assert len(packed.offsets) == 300 and len(packed.offsets._packed) * 3 < 300 * 8


def test_a_packed_batch_keeps_positions_past_4_gib_and_of_files_far_apart():
    far = 5 << 30
    wide = Batch([b"a\n", b"b\n", b"c\n"], [SRC, SRC2, SRC], [far, 0, far + 20], [far + 10, 10, far + 30], {})
    packed = wide.packed()
    assert list(packed.offsets) == [far, 0, far + 20] and packed.ends[2] == far + 30


def test_a_packed_batch_is_sent_again_whole_after_push_back_and_plain_where_only_some_documents_are():
    answers = iter(
        [
            refused(429, "es_rejected_execution_exception"),  # the whole request again, as it is held
            items(*([201] * 3 + [429] + [201] * 16)),  # one document again, alone
            None,
        ]
    )
    transport = MockTransport(lambda r: next(answers) or accepted(r))
    sender, attempts, _ = sender_for(transport)
    batch = batch_of(20)
    outcome = sender.deliver(batch.packed())
    assert outcome.counts() == {"delivered": 20}
    first, second, third = transport.requests
    assert first.gzipped and second.gzipped and first.body == second.body == batch.body
    assert not third.gzipped and third.ids == [batch.document_id(3)]
    assert attempts[0].pressure


def test_a_packed_batch_refused_as_too_large_is_split_by_its_uncompressed_size():
    batch = batch_of(40)
    limit = batch.nbytes // 2 + 100  # a limit on the request as Elasticsearch reads it

    def node(request: Request) -> Answer:
        return refused(413) if len(request.body) > limit else accepted(request)

    transport = MockTransport(node)
    sender, _, _ = sender_for(transport)
    assert sender.deliver(batch.packed()).counts() == {"delivered": 40}
    assert len(transport.requests) == 3 and sender.max_body == batch.nbytes - 1  # one refused, two halves
    assert sorted(i for r in transport.requests[1:] for i in r.ids) == sorted(Request(batch.body, "").ids)


@pytest.mark.parametrize(
    ("mode", "baseline", "expected"),
    [
        ("gzip", 0.001, True),
        ("off", 2.0, False),
        ("auto", None, True),  # no answer yet: held small until the cluster shows it is near
        ("auto", 0.01, False),  # the same host: CPU is what runs short
        ("auto", 0.1, False),  # under 32 MB of plain bodies in flight, even at one core's rate
        ("auto", 0.2, True),
        ("auto", 0.5, True),
    ],
)
def test_when_bodies_are_gzipped(mode, baseline, expected):
    assert worth_gzipping(mode, baseline) is expected


@pytest.mark.parametrize(
    ("given", "meant"),
    [("auto", "auto"), ("gzip", "gzip"), ("GZIP", "gzip"), ("true", "gzip"), ("1", "gzip"), ("off", "off"),
     ("false", "off"), ("0", "off"), (True, "gzip"), (False, "off")],
)  # fmt: skip
def test_compress_takes_its_words_and_those_a_boolean_is_written_with(given, meant):
    assert COMPRESSION.convert(given, None, None) == meant


def test_compress_alone_means_gzip_and_a_wrong_word_names_the_choices():
    from click.testing import CliRunner

    from amebo_logging.ship.cli import main
    from amebo_logging.ship.errors import OperatorError

    seen = {}

    @main.command("probe-compress", hidden=True)
    @connection_options
    def probe(**params):
        seen["compress"] = params["compress"]

    try:
        runner = CliRunner()
        assert runner.invoke(main, ["probe-compress", "--compress"]).exit_code == 0 and seen["compress"] == "gzip"
        assert runner.invoke(main, ["probe-compress"]).exit_code == 0 and seen["compress"] == "auto"
        failed = runner.invoke(main, ["probe-compress", "--compress", "fast"]).exception
        assert isinstance(failed, OperatorError) and failed.exit_code == 3
        assert failed.message == "--compress: 'fast' is not one of auto, gzip, off"
    finally:
        main.commands.pop("probe-compress")


@pytest.mark.parametrize("mode", ["gzip", "off", "auto"])
def test_every_document_arrives_once_whatever_the_compression(tmp_path, mode):
    transport = MockTransport(accepted)
    logs, shipper, _, _ = run_shipper(tmp_path, transport, batch_size=500, batch_bytes=1 << 16, compress=mode)
    write_numbered(logs / "app.log", 20_000)  # read in 64 KiB pieces: about 20 reads
    summary = shipper.run()
    ids = [i for r in transport.requests for i in r.ids]
    assert summary.snapshot.delivery.delivered == 20_000 == len(ids) == len(set(ids))
    gzipped = [r.gzipped for r in transport.requests]
    if mode == "gzip":
        assert all(gzipped)
    elif mode == "off":
        assert not any(gzipped)
    else:  # the first before any answer; once the mock has answered (at once: near), plain
        assert gzipped[0] and not gzipped[-1]
    assert committed_in_state(tmp_path) == [20_000 * LINE]


@pytest.mark.parametrize(
    ("answer", "kind"),
    [
        (refused(401, "security_exception"), "credentials"),
        (refused(403, "security_exception", "action [indices:data/write/bulk] is unauthorized"), "privileges"),
        (items(201, (403, {"type": "security_exception", "reason": "unauthorized"})), "privileges"),
        (refused(404, "index_not_found_exception"), "target"),
        (items(201, (400, {"type": "index_closed_exception", "reason": "closed"})), "target"),
    ],
)
def test_what_stops_the_run_commits_nothing_past_it_and_dead_letters_nothing(answer, kind):
    dead = DeadLetters()
    sender, _, _ = sender_for(MockTransport(lambda r: answer), dead)
    outcome = sender.deliver(batch_of(2))
    assert outcome.fatal is not None and outcome.fatal.kind == kind
    assert DEAD_LETTERED not in outcome.settled and dead.entries == []
    assert "grant" in outcome.fatal.message or kind != "privileges"


def test_a_dead_letter_that_cannot_be_written_leaves_the_document_pending():
    answers = iter([items(400), items(400)])
    sender, _, problems = sender_for(MockTransport(lambda r: next(answers)), DeadLetters(fail=True))
    sender.hard_stop.set()  # after the first retry, the run is stopping
    outcome = sender.deliver(batch_of(1))
    assert list(outcome.settled) == [0]  # not settled: it is read and sent again next time
    assert any(event == "dead_letter_write_failed" for _, event, _ in problems)


def test_a_refused_connection_is_retried_until_the_hard_stop_and_nothing_is_settled():
    calls = []

    def answer(request):
        calls.append(request)
        if len(calls) == 3:
            sender.hard_stop.set()  # (the shipper's, when the run gives up or is stopped)
        return refused(None, reason="connection refused")

    sender, attempts, _ = sender_for(MockTransport(answer))
    outcome = sender.deliver(batch_of(4))
    assert len(calls) == 3 and [a.failure for a in attempts] == [("connection", "connection refused")] * 3
    assert outcome.fatal is None and not outcome.again and list(outcome.settled) == [0] * 4


# --- the adaptive concurrency limit ----------------------------------------------------------------


def attempt(seconds: float, status: int | None = 200, pressure: bool = False) -> Attempt:
    return Attempt(seconds, 0.0, status, status is not None and status < 300, pressure=pressure)


class Sim:
    """Responses fed to a limit on a clock of its own (round trips in eighths of a second:
    exact in binary, so windows end exactly where the test expects)."""

    def __init__(self, limit: AdaptiveConcurrency) -> None:
        self.limit = limit
        self.now = 0.0

    def drive(self, rtt, windows: int, pressure=lambda w: False, reached: bool = True) -> list[int]:
        """*windows* rounds of as many responses as the limit, *rtt(w)* after the round began;
        the limit after each (a window ends at the first response after it)."""
        history = []
        for w in range(windows):
            n = self.limit.limit
            self.now += rtt(w)
            for _ in range(n):
                if reached:
                    self.limit.dispatched(n)
                self.limit.observe(attempt(rtt(w), 429 if pressure(w) else 200, pressure(w)), self.now)
            history.append(self.limit.limit)
        return history


def test_a_steady_cluster_earns_the_limit_doubling_then_one_at_a_time_up_to_the_maximum():
    limit = AdaptiveConcurrency(32)
    assert limit.limit == 1  # the limit is earned, never assumed
    history = Sim(limit).drive(lambda w: 0.5, 12)
    assert history[:6] == [2, 4, 8, 16, 32, 32]  # the first answer ends the first window
    assert max(history) == 32 == history[-1]


def test_the_shipper_starts_at_8_and_reaches_64_after_three_round_trips():
    options = ShipOptions(patterns=[])
    limit = AdaptiveConcurrency(options.max_in_flight, initial=options.initial_in_flight)
    assert limit.limit == 8 and options.max_in_flight == 64
    assert Sim(limit).drive(lambda w: 0.5, 5) == [16, 32, 64, 64, 64]


def test_no_growth_while_the_limit_is_not_reached():
    assert Sim(AdaptiveConcurrency(32)).drive(lambda w: 0.5, 10, reached=False)[-1] == 1


def test_push_back_while_the_limit_doubles_halves_it_back_to_the_last_that_drew_none():
    limit = AdaptiveConcurrency(64, initial=8)
    sim = Sim(limit)
    assert sim.drive(lambda w: 0.125, 2) == [16, 32]
    history = sim.drive(lambda w: 0.125, 2, pressure=lambda w: w == 0)
    assert history == [16, 16] and not limit.slow_start  # (and held there)


def test_push_back_cuts_the_limit_and_holds_it():
    limit = AdaptiveConcurrency(32)
    sim = Sim(limit)
    sim.drive(lambda w: 0.125, 8)
    sim.drive(lambda w: 0.125, 2, pressure=lambda w: w == 0)  # (the end of the doubling)
    sim.drive(lambda w: 0.125, 40)  # (the hold, then one more a window, up to the maximum)
    before = limit.limit
    history = sim.drive(lambda w: 0.125, 2, pressure=lambda w: w == 0)
    assert history[-1] == int(before * 0.9) and not limit.slow_start
    held = sim.drive(lambda w: 0.125, 9)
    assert max(held) <= history[-1] + 1  # held: at most one probe in the hold's windows


def test_a_rising_round_trip_time_cuts_the_limit():
    limit = AdaptiveConcurrency(32)
    sim = Sim(limit)
    sim.drive(lambda w: 0.125, 6)
    high = limit.limit
    history = sim.drive(lambda w: 0.375, 3)  # the cluster queues: each request takes 3x as long
    assert min(history) < high


def test_no_answer_changes_nothing():
    limit = AdaptiveConcurrency(8, initial=4)
    for _ in range(50):
        limit.dispatched(4)
        limit.observe(attempt(0.0, None), 0.0)
    assert limit.limit == 4


def simulate(capacity: int, requests: int = 3000, seed: int = 1) -> tuple[int, float, float]:
    """A cluster that refuses (429, at once) any request arriving while *capacity* are being
    handled; a handled request takes 1 s of the simulated clock; a refused one is sent again by
    its sender 0.5 s later (still in flight for the shipper).  Returns (refused, refused share,
    mean limit over the second half)."""
    import heapq

    rng = random.Random(seed)
    limit = AdaptiveConcurrency(32)
    now, events, handled = 0.0, [], 0  # events: (time, n, kind) with kind "arrive" or "answer"
    in_flight = done = refused_n = sent = n = 0
    limits = []
    while done < requests:
        while in_flight < limit.limit:  # the loop hands out work while the limit allows
            in_flight += 1
            limit.dispatched(in_flight)
            n += 1
            heapq.heappush(events, (now, n, "arrive"))
        now, _, kind = heapq.heappop(events)
        n += 1
        if kind == "arrive":
            sent += 1
            if handled < capacity:
                handled += 1
                heapq.heappush(events, (now + 1.0 + rng.uniform(-0.01, 0.01), n, "answer"))
            else:
                refused_n += 1
                limit.observe(attempt(0.001, 429, pressure=True), now)
                heapq.heappush(events, (now + 0.5, n, "arrive"))  # backed off, then sent again
        else:
            handled -= 1
            in_flight -= 1
            done += 1
            limit.observe(attempt(1.0), now)
        limits.append(limit.limit)
    second_half = limits[len(limits) // 2 :]
    return refused_n, refused_n / sent, sum(second_half) / len(second_half)


@pytest.mark.parametrize("capacity", [1, 3, 8])
def test_against_a_hard_limit_few_requests_are_refused_and_the_limit_settles_near_it(capacity):
    refused_n, share, mean_limit = simulate(capacity)
    assert share <= 0.10, (refused_n, share)
    assert 0.6 * capacity <= mean_limit <= capacity + 1.5, mean_limit  # near the limit: under it, not collapsed


# --- a shipper with several requests in flight -------------------------------------------------------


LINE = len(b'{"@timestamp":"2026-12-02T00:00:00Z","seq":0}\n')


def write_numbered(path: Path, n: int) -> None:
    """*n* lines of the same length (seq below 10), so line i starts at i * LINE."""
    path.write_bytes(b"".join(b'{"@timestamp":"2026-12-02T00:00:00Z","seq":%d}\n' % (i % 10) for i in range(n)))


def first_line(request: Request) -> int:
    """Which line of the file the request's first document is (its _id holds its offset)."""
    return int(request.ids[0].rsplit("-", 1)[1]) // LINE


class Gate:
    """A transport that holds back the request of the first batch (its first line at offset 0)
    until released; the others answer at once.  (Not the first request to arrive: with several
    senders, the second batch's may reach the transport first.)"""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.cond = threading.Condition()
        self.answered: list[int] = []
        self.active = 0
        self.max_active = 0
        self.held: int | None = None

    def __call__(self, request: Request) -> Answer:
        start = first_line(request)
        with self.cond:
            self.active += 1
            self.max_active = max(self.max_active, self.active)
            hold = self.held is None and start == 0
            if hold:
                self.held = start
        if hold:
            assert self.release.wait(30)
        with self.cond:
            self.active -= 1
            self.answered.append(start)
            self.cond.notify_all()
        return accepted(request)


class Far:
    """A cluster far away: each request is held until *release* is set; how many arrived is
    counted under *arrived* (a condition notified on each)."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.arrived = threading.Condition()
        self.active: list[int] = []

    def __call__(self, request: Request) -> Answer:
        with self.arrived:
            self.active.append(1)
            self.arrived.notify_all()
        assert self.release.wait(30)
        return accepted(request)


def run_shipper(tmp_path: Path, transport, opts: ShipOptions | None = None, **options):
    """A shipper of ``tmp_path/logs/*.log`` over *transport* (with *opts*, or ShipOptions of
    *options*), and the snapshots it publishes, with a condition notified on each."""
    logs = tmp_path / "logs"
    logs.mkdir(exist_ok=True)
    if opts is None:
        opts = ShipOptions(patterns=[str(logs / "*.log")], state_dir=tmp_path / "state", once=True, **options)
    published = threading.Condition()
    snapshots = []

    def progress(snap):
        with published:
            snapshots.append(snap)
            published.notify_all()

    shipper = Shipper(opts, lambda: transport, get_logger("test"), progress=progress)
    return logs, shipper, published, snapshots


@contextmanager
def shipping(shipper: Shipper, release: threading.Event) -> Iterator[list]:
    """*shipper* run in a thread of its own; on the way out *release* is set (the requests
    held back are answered) and the run awaited: its Summary is then in the list yielded."""
    result: list = []
    runner = threading.Thread(target=lambda: result.append(shipper.run()))
    runner.start()
    try:
        yield result
    finally:
        release.set()
        runner.join(30)


def run_bounded(shipper: Shipper, seconds: float) -> Summary:
    """*shipper*'s run, stopped at once after *seconds* if it has not ended by then (a run
    that should have ended on its own then fails its test rather than hanging it)."""
    result: list[Summary] = []
    runner = threading.Thread(target=lambda: result.append(shipper.run()))
    runner.start()
    runner.join(seconds)
    if runner.is_alive():
        shipper.request_stop()
        shipper.request_stop()  # (the second: at once)
        runner.join(30)
    [summary] = result
    return summary


def committed_in_state(tmp_path: Path) -> list[int]:
    store = StateStore(tmp_path / "state", create=False, lock=False)
    try:
        return [r.offset for r in store.all()]
    finally:
        store.close()


def test_a_slow_batch_holds_back_the_commit_of_faster_later_ones(tmp_path):
    gate = Gate()
    logs, shipper, published, snapshots = run_shipper(
        tmp_path, MockTransport(gate), batch_size=50, max_in_flight=8, initial_in_flight=4
    )
    write_numbered(logs / "app.log", 3000)
    with shipping(shipper, gate.release) as result:
        with gate.cond:  # batches after the held one go out and come back while it waits
            assert gate.cond.wait_for(lambda: gate.held is not None and max(gate.answered, default=0) > gate.held, 30)
            later = [a for a in gate.answered if a > gate.held]
        # ... and their acknowledgements are applied, but commit nothing past it
        committed = max(f.committed for s in snapshots_after(published, snapshots, 2) for f in s.files)
        assert gate.held == 0 and later and committed == 0  # nothing passes the first, slow batch
    [summary] = result
    assert summary.ended == "done" and summary.snapshot.delivery.delivered == 3000
    assert committed_in_state(tmp_path) == [3000 * LINE]


def snapshots_after(published: threading.Condition, snapshots: list, more: int = 3) -> list:
    """Every snapshot, once the loop has published *more* (it has gone round a few more times:
    time to do what it should not, if it would)."""
    with published:
        seen = len(snapshots)
        assert published.wait_for(lambda: len(snapshots) >= seen + more, 30)
        return list(snapshots)


def most_read(published: threading.Condition, snapshots: list) -> int:
    """The most lines read, once the loop has gone round a few more times (time to read on, if
    it would)."""
    return max(s.read.lines for s in snapshots_after(published, snapshots))


def test_reading_runs_ahead_of_a_low_limit_as_far_as_max_in_flight_and_memory_allow(tmp_path):
    """A cluster far away: while the limit is 4 and all four wait for their answer, reading
    goes on (up to --max-in-flight batches held, those waiting in two --batch-bytes), so that
    when the limit grows they go at once, not a round trip of reading later."""
    far = Far()
    logs, shipper, published, snapshots = run_shipper(
        tmp_path, MockTransport(far), batch_size=100, batch_bytes=64 << 10, max_in_flight=64, initial_in_flight=4
    )
    write_numbered(logs / "app.log", 20_000)
    with shipping(shipper, far.release) as result:
        # (waiting for the limit, 4 at most would wait beside the 4 in flight, 3 at the packer:
        # with a 64 KiB read and a batch filling, under 2,700 lines)
        with published:
            assert published.wait_for(lambda: snapshots and snapshots[-1].read.lines >= 4_000, 10)
        most = most_read(published, snapshots)
        # and no further: 64 held (4 of them in flight), a 64 KiB read past them, a batch filling
        assert len(far.active) == 4 and most <= 64 * 100 + 1_500 + 100, most
    [summary] = result
    assert summary.ended == "done" and summary.snapshot.delivery.delivered == 20_000


def test_requests_in_flight_take_the_place_of_batches_read_ahead(tmp_path):
    """Memory holds the same at any limit: with --max-in-flight requests out, reading waits at
    once (where batches waiting, as many again, would double what is held)."""
    far = Far()
    logs, shipper, published, snapshots = run_shipper(
        tmp_path, MockTransport(far), batch_size=200, batch_bytes=64 << 10, max_in_flight=32, initial_in_flight=32
    )
    write_numbered(logs / "app.log", 30_000)
    with shipping(shipper, far.release) as result:
        with far.arrived:
            assert far.arrived.wait_for(lambda: len(far.active) == 32, 10)
        most = most_read(published, snapshots)
        # the 32 in flight, a 64 KiB read past them (1,424 lines), a batch filling (where 31
        # batches waiting beside them, and 3 at the packer, would be 13,000 lines and more)
        assert len(far.active) == 32 and most <= 32 * 200 + 1_500 + 200, most
    [summary] = result
    assert summary.ended == "done" and summary.snapshot.delivery.delivered == 30_000


def ship_options_from_command_line(tmp_path: Path, *args: str, env: dict[str, str] | None = None) -> ShipOptions:
    """The ShipOptions ``amebo-logship ship`` builds from *args* (parsed by click, nothing run)."""
    from amebo_logging.ship.cli import main

    pattern = str(tmp_path / "logs" / "*.log")
    argv = [pattern, "--once", "--state-dir", str(tmp_path / "state"), *args]
    with pytest.MonkeyPatch.context() as mp:
        for key, value in (env or {}).items():
            mp.setenv(key, value)
        ctx = main.commands["ship"].make_context("ship", argv)
    return ShipOptions.from_params([pattern], ctx.params)


@pytest.mark.parametrize(
    ("args", "env", "expected"),
    [
        ((), None, 8),
        (("--initial-in-flight", "16"), None, 16),
        ((), {"AMEBO_LOGSHIP_INITIAL_IN_FLIGHT": "4"}, 4),
        (("--initial-in-flight", "16", "--max-in-flight", "6"), None, 6),  # (never above the cap)
    ],
)
def test_initial_in_flight_requests_go_out_before_the_first_answer(tmp_path, args, env, expected):
    """A cluster far away: as many requests as --initial-in-flight (at most --max-in-flight)
    are sent at the start, and no more until answers come back."""
    options = ship_options_from_command_line(tmp_path, "--batch-size", "100", *args, env=env)
    far = Far()
    logs, shipper, published, snapshots = run_shipper(tmp_path, MockTransport(far), options)
    write_numbered(logs / "app.log", 5_000)
    with shipping(shipper, far.release) as result:
        with far.arrived:
            assert far.arrived.wait_for(lambda: len(far.active) >= expected, 10)
        # the loop goes round a few more times: no request beyond the limit
        limits = {s.concurrency_limit for s in snapshots_after(published, snapshots) if s.in_flight}
        assert len(far.active) == expected and limits == {expected}, (len(far.active), limits)
    [summary] = result
    assert summary.ended == "done" and summary.snapshot.delivery.delivered == 5_000


def test_a_sender_thread_is_started_for_each_request_in_flight_not_for_max_in_flight(tmp_path):
    far = Far()

    def senders() -> int:
        return sum(t.name.startswith("amebo-logship-sender-") for t in threading.enumerate())

    logs, shipper, _, _ = run_shipper(
        tmp_path, MockTransport(far), batch_size=100, max_in_flight=128, initial_in_flight=4
    )
    write_numbered(logs / "app.log", 5_000)
    with shipping(shipper, far.release) as result:
        with far.arrived:
            assert far.arrived.wait_for(lambda: len(far.active) == 4, 10)
        assert senders() == 4
    [summary] = result
    assert summary.ended == "done" and summary.snapshot.delivery.delivered == 5_000


def test_after_push_back_the_requests_refused_go_again_no_more_at_once_than_the_cut_limit(tmp_path):
    """Eight requests out at the start, all refused (429): the limit is halved to four, and the
    eight go again, four at a time, not each on its own clock (a cluster that said "too much"
    would have them all back at once)."""
    cond = threading.Condition()
    arrived: list[int] = []
    active = 0
    most = 0
    release = threading.Event()

    def overloaded(request: Request) -> Answer:
        nonlocal active, most
        with cond:
            arrived.append(first_line(request))
            cond.notify_all()
            if len(arrived) <= 8:  # the first eight: refused together, once all are out
                assert cond.wait_for(lambda: len(arrived) >= 8, 10)
                return refused(429, "es_rejected_execution_exception", "rejected execution")
            active += 1
            most = max(most, active)
            cond.notify_all()
        assert release.wait(30)
        with cond:
            active -= 1
        return accepted(request)

    logs, shipper, published, snapshots = run_shipper(
        tmp_path,
        MockTransport(overloaded),
        batch_size=100,
        max_in_flight=8,
        initial_in_flight=8,
        backoff_initial=0.01,
        backoff_max=0.02,
    )
    write_numbered(logs / "app.log", 2_000)
    with shipping(shipper, release) as result:
        with cond:
            assert cond.wait_for(lambda: active == 4, 10)
        snapshots_after(published, snapshots)  # the loop goes round a few more times: no fifth request
        with cond:
            assert most == 4 and sorted(arrived[:8]) == list(range(0, 800, 100)), (most, arrived)
            assert set(arrived[8:12]) <= set(range(0, 800, 100))  # those refused go first
    [summary] = result
    assert summary.ended == "done" and summary.snapshot.delivery.delivered == 2_000
    assert summary.snapshot.delivery.retries["429"] == 8


def test_a_cluster_that_refuses_everything_is_given_up_on_after_give_up_after(tmp_path):
    logs, shipper, _, _ = run_shipper(
        tmp_path,
        MockTransport(lambda request: refused(429, "es_rejected_execution_exception", "rejected execution")),
        batch_size=100,
        give_up_after=0.3,
        backoff_initial=0.01,
        backoff_max=0.02,
    )
    write_numbered(logs / "app.log", 1_000)
    summary = run_bounded(shipper, 10)
    assert summary.ended == "fatal" and summary.fatal is not None and summary.fatal.kind == "unreachable"
    assert "did not accept documents for 0.3s" in summary.fatal.message and "nothing is lost" in summary.fatal.message
    assert summary.unsettled == 1_000 and committed_in_state(tmp_path) == [0]  # (nothing past the start)


def test_give_up_after_cuts_short_a_senders_own_backoff_and_says_nothing_is_lost(tmp_path):
    # a refused connection is not push-back: the sender waits out its own backoff (10-20 s
    # here) before it tries again; the shipper gives up at 0.3 s and the hard stop ends the wait
    transport = MockTransport(lambda request: refused(None, reason="connection refused"))
    logs, shipper, _, _ = run_shipper(tmp_path, transport, give_up_after=0.3, backoff_initial=20.0, backoff_max=20.0)
    write_numbered(logs / "app.log", 300)
    summary = run_bounded(shipper, 10)
    assert summary.ended == "fatal" and summary.fatal is not None and summary.fatal.kind == "unreachable"
    assert "did not accept documents for 0.3s (last: connection refused)" in summary.fatal.message
    assert "nothing is lost" in summary.fatal.message and summary.seconds < 10
    assert len(transport.requests) == 1 and summary.unsettled == 300 and committed_in_state(tmp_path) == [0]


def test_max_in_flight_1_sends_one_request_at_a_time(tmp_path):
    gate = Gate()
    gate.release.set()
    logs, shipper, _, _ = run_shipper(tmp_path, MockTransport(gate), batch_size=50, max_in_flight=1)
    write_numbered(logs / "app.log", 500)
    summary = shipper.run()
    assert summary.snapshot.delivery.delivered == 500 and gate.max_active == 1
    assert gate.answered == list(range(0, 500, 50))  # in order, one after the other


@pytest.mark.slow  # (a request held at the end waits out its 0.2 s: the transport cannot know it is the last)
@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), batch_size=st.integers(1, 40), max_in_flight=st.integers(2, 8))
def test_out_of_order_completions_commit_only_contiguous_prefixes(tmp_path_factory, seed, batch_size, max_in_flight):
    """Requests held back at random until a later one arrives (so later ones are answered
    first): the committed offset never moves back, never passes a line whose request has not
    been answered, and ends at the end of the file."""
    tmp_path = tmp_path_factory.mktemp("reorder")
    rng = random.Random(seed)
    lock = threading.Lock()
    held: list[threading.Event] = []
    answered: list[tuple[int, int]] = []  # (first line, lines) of each answered request
    overtaken = [0]

    def handler(request: Request) -> Answer:
        me = threading.Event()
        with lock:
            if held:  # a later request arrived: let one held request go (it is answered after this one)
                held.pop(rng.randrange(len(held))).set()
                overtaken[0] += 1
            hold = (not answered and not held) or rng.random() < 0.6  # the first always: a reorder
            if hold:
                held.append(me)
        if hold and not me.wait(0.2):
            with lock:
                if me in held:
                    held.remove(me)
        with lock:
            answered.append((first_line(request), len(request)))
        return accepted(request)

    n = 400
    logs, shipper, published, snapshots = run_shipper(
        tmp_path, MockTransport(handler), batch_size=batch_size, max_in_flight=max_in_flight, initial_in_flight=2
    )
    write_numbered(logs / "app.log", n)

    def contiguous() -> int:
        done = set()
        with lock:
            for start, count in answered:
                done.update(range(start, start + count))
        k = 0
        while k in done:
            k += 1
        return k * LINE

    checks = []

    def progress(snap):
        if snap.files:  # (a file read to its end is let go: the last snapshots have none)
            checks.append((max(f.committed for f in snap.files), contiguous()))

    shipper.progress = progress
    summary = shipper.run()
    assert summary.snapshot.delivery.delivered == n
    last = 0
    for committed, answered_prefix in checks:
        assert last <= committed <= answered_prefix
        last = committed
    assert checks and committed_in_state(tmp_path) == [n * LINE]
    assert overtaken[0] or len(answered) == 1  # completions did come back out of order


def test_a_dry_run_prints_requests_in_order(tmp_path):
    import io

    from amebo_logging.ship.dryrun import ConsoleTransport

    out = io.BytesIO()
    logs = tmp_path / "logs"
    logs.mkdir()
    write_numbered(logs / "app.log", 300)
    opts = ShipOptions(patterns=[str(logs / "*.log")], state_dir=tmp_path / "state", once=True, dry_run=True,
                       batch_size=7)  # fmt: skip
    console = ConsoleTransport(out)
    Shipper(opts, lambda: console, get_logger("test")).run()
    starts = [int(i.rsplit("-", 1)[1]) for i in Request(out.getvalue(), "").ids]
    assert starts == [k * LINE for k in range(300)]


def test_the_original_line_of_every_kind_of_document_is_given_back():
    """What the dead letter keeps: the line as it was, whatever the batcher spliced in."""
    from amebo_logging.ship.items import Framed

    plain = Source.make("aa" * 8, "/a.log")
    framed = Source.make(
        "bb" * 8, "/var/log/containers/p_ns_c-" + "c" * 64 + ".log", {"container.id": "c"}, framed=True
    )
    lines = [
        b'{"@timestamp":"2026-12-02T00:00:00Z","a":1}',
        b'{"a":"no timestamp"}',
        b'{"stream":"mine","@timestamp":"2026-12-02T00:00:00Z"}',  # a plain line's own "stream" key
        b'{"log.offset":5}',
        b"not json",
    ]
    batches = []
    batcher = Batcher(
        batches.append, host_name="h", batch_size=100, batch_bytes=1 << 30, max_line_bytes=1 << 20, stats=ReadStats()
    )
    batcher.add(Chunk(plain, 0, b"".join(line + b"\n" for line in lines)))
    records = [(1000 + 100 * k, 1000 + 100 * k + 99, line, "2026-12-02T10:00:00Z", "stdout", 0) for k, line in
               enumerate(lines)]  # fmt: skip
    batcher.add(Framed(framed, records, 2000, 500))
    batcher.flush()
    [batch] = batches
    assert [batch.original_line(i) for i in range(len(batch))] == lines + lines
    assert {batch.source(i).uid for i in range(5)} == {plain.uid} and batch.source(7).uid == framed.uid


def test_a_dry_run_after_a_real_one_says_what_it_does_not_print(tmp_path):
    """A dry run starts from the saved offsets: what was shipped before is not printed, and
    the summary says so, and how to print everything."""
    import io

    from amebo_logging.ship.dryrun import ConsoleTransport
    from amebo_logging.ship.report import summary_lines

    logs = tmp_path / "logs"
    logs.mkdir()
    write_numbered(logs / "app.log", 300)
    opts = ShipOptions(patterns=[str(logs / "*.log")], state_dir=tmp_path / "state", once=True)
    first = Shipper(opts, lambda: MockTransport(accepted), get_logger("test")).run()
    assert first.snapshot.delivery.delivered == 300 and not first.resumed_bytes
    assert not any(line.startswith(("not printed", "skipped")) for line in summary_lines(first))
    with (logs / "app.log").open("ab") as f:
        f.write(b'{"@timestamp":"2026-12-02T00:00:01Z","seq":300}\n')
    out = io.BytesIO()
    dry = ShipOptions(patterns=[str(logs / "*.log")], state_dir=tmp_path / "state", once=True, dry_run=True)
    console = ConsoleTransport(out)
    summary = Shipper(dry, lambda: console, get_logger("test")).run()
    assert summary.snapshot.delivery.delivered == 1 and Request(out.getvalue(), "").ids[0].endswith(f"-{300 * LINE}")
    said = summary_lines(summary)
    assert said[1] == (
        f"not printed: {300 * LINE / 1024:.1f} KiB of 1 file shipped by an earlier run (the offsets saved in "
        f"{tmp_path / 'state'}); a dry run starts where shipping would. To print every line, give it an empty "
        'state directory: --state-dir "$(mktemp -d)"'
    )
    again = Shipper(opts, lambda: MockTransport(accepted), get_logger("test")).run()  # the dry run saved nothing
    assert again.snapshot.delivery.delivered == 1 and summary_lines(again)[1].startswith("skipped: ")
