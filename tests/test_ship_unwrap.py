"""Docker json-file entries unwrapped in C (``_unwrap.c``) against the pure-Python framer.

The C path is only a faster way to the same records: for any file, whole entries, parts,
escapes of every kind, lone surrogates, control characters, bytes that are not UTF-8, other
layouts and streams, cut at any read boundary, the records, what is acknowledged and the
documents built from them are byte for byte those of the careful way.  And whatever it takes
of any bytes is what orjson reads there.
"""

from __future__ import annotations

import ctypes
import json
import mmap
import re
import shutil

import msgspec
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from amebo_logging.ship import batch as batch_module
from amebo_logging.ship import formats
from amebo_logging.ship.batch import Batcher, ReadStats
from amebo_logging.ship.formats import DockerFramer, Run
from amebo_logging.ship.items import Chunk, Source
from amebo_logging.ship.reader import hand_out

built = pytest.mark.skipif(formats.c_unwrap is None, reason="the C unwrapper is not built here")

TIME = "2026-12-02T10:00:00.123456789Z"

# pieces of a JSON string body: text as orjson escapes it, and every other escape (and a few
# things no JSON has) as raw bytes
_TEXT = st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=12).map(
    lambda t: orjson.dumps(t)[1:-1]
)
_ODD = st.sampled_from(
    [
        b'\\"', b"\\\\", b"\\/", b"\\n", b"\\r", b"\\t", b"\\b", b"\\f", b"\\u003c", b"\\u00e9", b"\\u20AC",
        b"\\ud83d\\ude00", b"\\ud800", b"\\udc00", b"\\ud800x", b"\\u0000", b"\\u12", b"\\x", b"\\", b"\x01",
        b"\x7f", b"\xff", b"\xc3", b"\xe2\x82", b"\xed\xa0\x80", b"\xf4\x90\x80\x80", b"\xc0\xaf", b'"', b"\t",
    ]
)  # fmt: skip
_ENDINGS = st.sampled_from([b"\\n", b"\\n", b"\\n", b"", b"\\r\\n", b"\\n\\n", b"\\u000a"])


_KEYS = [*formats.CONTAINER_KEYS, "containerd", "streams", "kubernetes", "stream.x", "s"]


def _respelled(draw, body: bytes) -> bytes:
    """*body* (a Docker entry's log, escaped) with the quote before a key or string, or the
    letter after it, written another way JSON allows: the entry's own \\u escape, or an escape
    inside the line (its key is then "\\u0073tream")."""
    how = draw(st.sampled_from(["as is"] * 3 + ["outer letter", "outer quote", "inner letter", "html"]))
    quotes = [m.start() for m in re.finditer(rb'\\"[a-z]', body)]
    if how == "as is" or not quotes:
        return body
    at = draw(st.sampled_from(quotes))
    letter = b"%04x" % body[at + 2]
    if how == "outer letter":  # (Docker writes letters as they are; another writer may not)
        return body[: at + 2] + b"\\u" + letter + body[at + 3 :]
    if how == "outer quote":
        return body[:at] + b"\\u0022" + body[at + 2 :]
    if how == "inner letter":
        return body[: at + 2] + b"\\\\u" + letter + body[at + 3 :]
    return body[: at + 2] + b"\\u003c\\u0026" + body[at + 2 :]  # as Docker writes < and &


@st.composite
def entries(draw, seq: int) -> bytes:
    """One outer line: mostly what Docker writes (a JSON record, or any text), sometimes not."""
    kind = draw(st.sampled_from(["record", "record", "record", "text", "odd"]))
    if kind == "record":
        doc = {"@timestamp": "2026-12-02T10:00:00Z", "seq": seq, "m": draw(st.text(max_size=20))}
        if draw(st.booleans()):
            del doc["@timestamp"]  # (the runtime's time is used)
        if draw(st.integers(0, 3)) == 0:  # a key the container's document gets, or one like it
            doc[draw(st.sampled_from(_KEYS))] = "x"
        text = orjson.dumps(doc).decode()
        if draw(st.integers(0, 5)) == 0:  # written by another encoder: blanks between the members
            text = "{ " + json.dumps(doc)[1:]
        body = _respelled(draw, orjson.dumps(text)[1:-1])
    elif kind == "text":
        body = draw(_TEXT)
    else:
        body = b"".join(draw(st.lists(st.one_of(_TEXT, _ODD), max_size=6)))
    body += draw(_ENDINGS)
    stream = draw(st.sampled_from([b"stdout", b"stdout", b"stderr", b"other"]))
    time = draw(st.sampled_from([TIME.encode(), TIME.encode(), b"", b"x\\u0041"]))
    layout = draw(st.sampled_from(["docker"] * 6 + ["spaced", "reordered", "attrs", "cut"]))
    if layout == "docker":
        line = b'{"log":"' + body + b'","stream":"' + stream + b'","time":"' + time + b'"}'
    elif layout == "spaced":
        line = b'{"log": "' + body + b'", "stream": "' + stream + b'", "time": "' + time + b'"}'
    elif layout == "reordered":
        line = b'{"stream":"' + stream + b'","log":"' + body + b'","time":"' + time + b'"}'
    elif layout == "attrs":
        line = b'{"log":"' + body + b'","stream":"' + stream + b'","attrs":{"a":"b"},"time":"' + time + b'"}'
    else:
        whole = b'{"log":"' + body + b'","stream":"' + stream + b'","time":"' + time + b'"}'
        line = whole[: draw(st.integers(0, 40))]
    return line.replace(b"\n", b"") + b"\n"


def _flatten(pieces: list) -> list:
    out = []
    for piece in pieces:
        out += piece.records() if isinstance(piece, Run) else piece
    return out


@built
@settings(max_examples=60, deadline=None)
@given(data=st.data(), n=st.integers(1, 40), max_bytes=st.sampled_from([1 << 20, 1 << 20, 64, 200]))
def test_the_c_path_gives_the_records_and_covered_offsets_of_the_careful_way(data, n, max_bytes):
    lines = [data.draw(entries(i)) for i in range(n)]
    # read in pieces cut at line boundaries (the reader hands out complete outer lines)
    cuts = sorted(set(data.draw(st.lists(st.integers(1, n - 1), max_size=4)) if n > 1 else []))
    fast, careful = DockerFramer(max_bytes), DockerFramer(max_bytes, fast=False)
    offset = base = 1000
    for a, b in zip([0, *cuts], [*cuts, n], strict=True):
        chunk = b"".join(lines[a:b])
        pieces = fast.frame(chunk, offset)
        assert _flatten(pieces) == careful.feed(chunk, offset)
        offset += len(chunk)
        assert fast.covered(offset) == careful.covered(offset)
        # the pieces follow each other: a run starts where nothing is still being joined
        for piece in pieces:
            if isinstance(piece, Run):
                assert piece.starts[0] >= base and piece.end <= offset
                assert piece.starts == sorted(piece.starts) and len(piece.starts) == len(piece.lines) + 1


@built
@settings(max_examples=150, deadline=None)
@given(
    lines=st.lists(st.binary(max_size=60), max_size=8),
    mutate=st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 255)), max_size=3),
    seq=st.integers(0, 10),
    data=st.data(),
)
def test_whatever_the_c_path_takes_of_any_bytes_is_what_orjson_reads_there(lines, mutate, seq, data):
    # real entries with bytes changed, and arbitrary bytes: no crash, and each line it takes
    # decodes with orjson to exactly that log, stream and time
    raw = bytearray(b"".join([data.draw(entries(seq)), *(line.replace(b"\n", b"") + b"\n" for line in lines)]))
    for at, byte in mutate:
        if raw and byte != 0x0A:
            raw[at % len(raw)] = byte
    chunk = bytes(raw)
    if not chunk.endswith(b"\n"):
        chunk += b"\n"
    lines_, starts, stream, objects, stop, keyed = formats.c_unwrap(chunk, 0, 0, 1 << 20)
    run = Run(lines_, starts, ("stdout", "stderr")[stream] if lines_ else "", bool(objects), chunk, 0, keyed)
    for i, line in enumerate(lines_):
        entry = orjson.loads(chunk[starts[i] : starts[i + 1]])
        assert entry == {"log": line.decode() + "\n", "stream": run.stream, "time": run.time(i)}
    assert stop == (starts[-1] if lines_ else 0)
    assert objects == (bool(lines_) and all(line.startswith(b'{"') for line in lines_))


@built
@settings(max_examples=150, deadline=None)
@given(data=st.data(), n=st.integers(1, 30))
def test_a_line_the_c_path_does_not_mark_as_keyed_has_no_key_a_containers_document_gets(data, n):
    """The batcher checks only the marked lines for the container's keys (stream, container.*,
    kubernetes.*): however the entry or the line spells a key, a line holding one is marked."""
    chunk = b"".join(data.draw(entries(i)) for i in range(n))
    lines, _starts, _stream, _objects, _stop, keyed = formats.c_unwrap(chunk, 0, 0, 1 << 20, formats._CONTAINER_WATCH)
    for i, line in enumerate(lines):
        try:
            doc = orjson.loads(line)
        except orjson.JSONDecodeError:
            continue
        if isinstance(doc, dict) and set(doc) & set(formats.CONTAINER_KEYS):
            assert i in keyed, line


@built
@pytest.mark.parametrize("key", formats.CONTAINER_KEYS)
@pytest.mark.parametrize(
    "spelling", ["as is", "outer letter", "outer quote", "outer dot", "inner letter", "inner dot", "deep"]
)
def test_a_line_with_a_containers_key_is_marked_as_keyed_however_it_is_spelled(key, spelling):
    doc = {"@timestamp": "2026-12-02T10:00:00Z", "message": "m" * 40, key: 1, "n": "x" * 40}
    text = orjson.dumps(doc).decode()
    u = f"\\u{ord(key[0]):04x}"  # (a \u escape of the key's first letter)
    if spelling == "inner letter":  # the line's own escape: {"\u0073tream": 1}
        text = text.replace(f'"{key}"', f'"{u}{key[1:]}"')
    elif spelling == "inner dot":
        text = text.replace(f'"{key}"', '"' + key.replace(".", "\\u002e") + '"')
    elif spelling == "deep":  # (in an object inside the line: marked too, which is only slower)
        text = text.replace(f'"{key}":1', f'"o":{{"{key}":1}}')
    body = orjson.dumps(text)[1:-1]
    escaped = b'\\"' + key.encode()  # the key's opening quote and the key, as the entry has them
    if spelling == "outer letter":  # the entry's own escape (Docker's writer does not; another may)
        body = body.replace(escaped, b'\\"' + u.encode() + key[1:].encode())
    elif spelling == "outer quote":
        body = body.replace(escaped, b"\\u0022" + key.encode())
    elif spelling == "outer dot":
        body = body.replace(escaped, escaped.replace(b".", b"\\u002e"))
    entry = b'{"log":"' + body + b'\\n","stream":"stdout","time":"' + TIME.encode() + b'"}\n'
    assert orjson.loads(orjson.loads(entry)["log"]) == orjson.loads(text)  # (what the line holds)
    lines, _starts, _stream, _objects, stop, keyed = formats.c_unwrap(
        entry * 2, 0, 0, 1 << 20, formats._CONTAINER_WATCH
    )
    assert (len(lines), stop) == (2, 2 * len(entry)), entry
    assert keyed == [0, 1], entry


@built
def test_the_common_containers_line_is_not_marked_as_keyed():
    """(Else every line takes the longer check: slower, and nothing would say so.)"""
    doc = {"@timestamp": "2026-12-02T10:00:00Z", "message": "GET /v1/events?a=1&b=<2>", "container_name": "c"}
    entry = orjson.dumps({"log": orjson.dumps(doc).decode() + "\n", "stream": "stdout", "time": TIME})
    entry = entry.replace(b"&", b"\\u0026").replace(b"<", b"\\u003c").replace(b">", b"\\u003e")  # (as Docker writes)
    chunk = entry + b"\n"
    lines, _starts, _stream, _objects, stop, keyed = formats.c_unwrap(
        chunk * 50, 0, 0, 1 << 20, formats._CONTAINER_WATCH
    )
    assert (len(lines), stop, keyed) == (50, len(chunk) * 50, [])
    assert orjson.loads(lines[0]) == doc
    marked = chunk.replace(b"container_name", b"container.name")
    assert formats.c_unwrap(marked * 3, 0, 0, 1 << 20, formats._CONTAINER_WATCH)[5] == [0, 1, 2]


def test_the_container_check_looks_for_every_key_the_unwrapper_watches_for():
    fields = {f.encode_name for f in msgspec.structs.fields(batch_module._PlainContainer)}
    plain = {f.encode_name for f in msgspec.structs.fields(batch_module._Plain)}
    assert fields - plain == set(formats.CONTAINER_KEYS)


@built
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data(), n=st.integers(1, 60), batch_size=st.integers(1, 7), max_bytes=st.sampled_from([1 << 20, 90]))
def test_the_documents_of_a_run_are_those_of_its_records(data, n, batch_size, max_bytes, monkeypatch_time):
    """Batched as columns (:class:`Unwrapped`) or as records (:class:`Framed`): the same bulk
    bodies, the same acknowledgement points, the same counts."""
    lines = [data.draw(entries(i)) for i in range(n)]
    chunk = b"".join(lines)
    source = Source.make("cc" * 8, "/var/lib/docker/containers/x/x-json.log", {"container.id": "x"}, framed=True)

    def batches(items) -> tuple[list, ReadStats]:
        out: list = []
        stats = ReadStats()
        batcher = Batcher(
            out.append, host_name="h", batch_size=batch_size, batch_bytes=1 << 20, max_line_bytes=max_bytes, stats=stats
        )
        for item in items:
            batcher.add(item)
        batcher.flush()
        return [(b.body_of(), dict(b.source_ends), len(b)) for b in out], stats

    # the pieces as the reader hands them out, unwrapped in C and the careful way (all of the
    # chunk as records; like any piece, handed out only when it holds records or moves the
    # covered offset on: an entry with an empty "log" and no newline is neither)
    def handed_out(framer: DockerFramer) -> list:
        items: list = []
        hand_out(source, framer, framer.frame(chunk, 0), 0, 0, len(chunk), items)
        return items

    got, got_stats = batches(handed_out(DockerFramer(max_bytes)))
    want, want_stats = batches(handed_out(DockerFramer(max_bytes, fast=False)))
    assert got == want
    assert got_stats.bytes == len(chunk)  # every byte read counts once, when it is read
    assert (got_stats.lines, got_stats.empty, got_stats.bytes, got_stats.parse_failures) == (
        want_stats.lines,
        want_stats.empty,
        want_stats.bytes,
        want_stats.parse_failures,
    )


@built
def test_a_part_still_being_joined_after_a_run_counts_as_read_and_acknowledges_nothing():
    """A line, then the first part of one Docker split (no newline at the end of its log):
    the run's document, its bytes and the part's, and no batch beyond the run's."""
    line = b'{"log":"{\\"@timestamp\\":\\"2026-12-02T10:00:00Z\\",\\"seq\\":%d}%s","stream":"stdout","time":"%s"}\n'
    when = b"2026-12-02T10:00:00.123456789Z"
    chunk = line % (0, b"\\n", when) + line % (1, b"", when)
    source = Source.make("cc" * 8, "/var/lib/docker/containers/x/x-json.log", {"container.id": "x"}, framed=True)
    framer = DockerFramer(1 << 20)
    pieces = framer.frame(chunk, 0)
    assert [type(piece) for piece in pieces] == [Run]  # (the part is the framer's, waiting to be joined)
    items: list = []
    hand_out(source, framer, pieces, 0, 0, len(chunk), items)
    out: list = []
    stats = ReadStats()
    batcher = Batcher(out.append, host_name="h", batch_size=1, batch_bytes=1 << 20, max_line_bytes=1 << 20, stats=stats)
    for item in items:
        batcher.add(item)
    batcher.flush()
    first = chunk.index(b"\n") + 1
    assert [(len(b), dict(b.source_ends)) for b in out] == [(1, {source.uid: first})]
    assert (stats.lines, stats.bytes) == (1, len(chunk))


@pytest.fixture
def monkeypatch_time(monkeypatch):
    """The read time of documents without any time of their own, fixed (the two runs compared
    are a moment apart)."""
    monkeypatch.setattr(batch_module, "timestamp_now", lambda: "2026-12-02T11:00:00.000000Z")


def test_the_c_unwrapper_is_built_where_a_compiler_is():
    """An install on a machine with a C compiler (CI's) builds it: the speed is not lost
    silently to a build that failed."""
    if shutil.which("cc") is None and shutil.which("gcc") is None:
        pytest.skip("no C compiler here: the pure-Python framer is used")
    assert formats.c_unwrap is not None


@built
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    docs=st.lists(
        st.one_of(
            st.fixed_dictionaries({"@timestamp": st.just("2026-12-02T10:00:00Z"), "m": st.text(max_size=30)}),
            st.fixed_dictionaries({"m": st.text(max_size=10)}),  # no @timestamp: the read time is added
            st.fixed_dictionaries(
                {"@timestamp": st.just("2026-12-02T10:00:00Z"), "log.offset": st.integers(-(2**63), 2**63 - 1)}
            ),
        ),
        min_size=1,
        max_size=40,
    ),
    offset=st.integers(0, 1 << 40),
    batch_size=st.integers(1, 9),
)
def test_a_plain_chunk_gets_the_same_operations_made_in_c_or_formatted(
    docs, offset, batch_size, monkeypatch, monkeypatch_time
):
    """The plain path's operations are made in C where it is built, %-formatted where not: the
    same bulk bodies and acknowledgement points either way."""
    data = b"".join(orjson.dumps(d) + b"\n" for d in docs)
    source = Source.make("dd" * 8, "/var/log/amebo/app.log")

    def batches():
        out: list = []
        stats = ReadStats()
        batcher = Batcher(
            out.append, host_name="h", batch_size=batch_size, batch_bytes=1 << 20, max_line_bytes=1 << 20, stats=stats
        )
        batcher.add(Chunk(source, offset, data))
        batcher.flush()
        return [(b.body_of(), dict(b.source_ends)) for b in out]

    in_c = batches()
    with monkeypatch.context() as m:
        m.setattr(batch_module, "_c_operations", None)
        formatted = batches()
    assert in_c == formatted
    assert sum(body.count(b"\n") for body, _ in in_c) == 2 * len(docs)


@pytest.fixture
def at_a_guard_page():
    """Puts bytes at the very end of a page the next of which cannot be read (a read beyond
    them faults): the C unwrapper reads by blocks, and must never read past what it is given."""
    page = mmap.PAGESIZE
    area = mmap.mmap(-1, 2 * page)
    anchor = ctypes.c_char.from_buffer(area)
    guard = ctypes.c_void_p(ctypes.addressof(anchor) + page)
    mprotect = ctypes.CDLL(None, use_errno=True).mprotect
    if mprotect(guard, ctypes.c_size_t(page), 0) != 0:  # (PROT_NONE)
        pytest.skip("mprotect is not available here")
    views: list[memoryview] = []

    def place(data: bytes) -> memoryview:
        area[page - len(data) : page] = data
        views.append(memoryview(area)[page - len(data) : page])
        return views[-1]

    yield place
    mprotect(guard, ctypes.c_size_t(page), mmap.PROT_READ | mmap.PROT_WRITE)
    for view in views:
        view.release()
    del anchor
    area.close()


@built
def test_the_c_path_never_reads_beyond_the_bytes_it_is_given(at_a_guard_page):
    """Entries cut anywhere, escapes at every distance from the end, with and without Docker's
    tail: each read ends at the guard page's edge (a fault here, not a wrong record elsewhere)."""
    tails = [b"", b"x", b"\\\\", b"\\u0041", b'\\"', b'\\"stream\\"', b'\\"container.']
    for k in range(40):
        for n in range(0, 24, 3):
            for tail in tails:
                body = b"a" * k + b'\\"' * n + tail
                for entry in (
                    b'{"log":"' + body + b"\n",
                    b'{"log":"' + body + b'\\n","stream":"stdout","time":"' + b"t" * k + b'"}\n',
                ):
                    view = at_a_guard_page(entry)
                    got = formats.c_unwrap(view, 0, 0, 1 << 20, formats._CONTAINER_WATCH)
                    assert got == formats.c_unwrap(entry, 0, 0, 1 << 20, formats._CONTAINER_WATCH)
