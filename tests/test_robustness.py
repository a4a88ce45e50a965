"""Logging never raises into the application: odd values, odd keys, failed writes."""

from __future__ import annotations

import decimal
import enum
import io
import os
import subprocess
import sys
import textwrap
import uuid
from datetime import UTC, datetime

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from amebo_logging import configure_logging, get_logger
from amebo_logging.render import MAX_DEPTH, render_json


class BadRepr:
    def __repr__(self):
        raise RuntimeError("repr exploded")


class BadStrError(Exception):
    def __str__(self):
        raise RuntimeError("str exploded")


class Color(enum.Enum):
    RED = "red"


leaves = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**80), max_value=2**80)
    | st.floats()
    | st.text()
    | st.binary(max_size=40)
    | st.builds(BadRepr)
    | st.builds(object)
    | st.decimals(allow_nan=True)
    | st.uuids()
    | st.datetimes()
    | st.just(Color.RED)
    | st.just("\ud800lone surrogate")
    | st.builds(BadStrError, st.just("x"))
)
keys = st.text(max_size=8) | st.integers() | st.tuples(st.integers()) | st.builds(BadRepr) | st.none()
values = st.recursive(
    leaves,
    lambda children: (
        st.lists(children, max_size=4)
        | st.sets(st.integers(), max_size=3)
        | st.frozensets(st.text(max_size=3), max_size=3)
        | st.tuples(children, children)
        | st.dictionaries(keys, children, max_size=4)
    ),
    max_leaves=25,
)


@settings(max_examples=300, deadline=None)
@given(
    # "event" is the positional parameter's name: passing it twice is Python's TypeError, as in structlog
    fields=st.dictionaries(st.text(min_size=1, max_size=12).filter(lambda k: k != "event"), values, max_size=5),
    event=values,
)
def test_any_values_give_exactly_one_json_line(fields, event):
    buffer = io.BytesIO()
    configure_logging(stream=buffer, fmt="json")
    get_logger("fuzz").info(event, **fields)
    data = buffer.getvalue()
    assert data.count(b"\n") == 1 and data.endswith(b"\n")
    record = orjson.loads(data)
    assert isinstance(record, dict) and record["log.level"] == "info"


def test_recursive_and_deep_structures_are_cut(logfile):
    logfile.configure()
    loop: list = []
    loop.append(loop)
    deep: dict = {}
    node = deep
    for _ in range(1000):
        node["d"] = {}
        node = node["d"]
    get_logger("x").info("shapes", loop=loop, deep=deep)
    record = logfile.one()
    assert record["loop"] == ["<cut: recursive reference>"]
    depth, node = 0, record["deep"]
    while isinstance(node, dict):
        node, depth = node["d"], depth + 1
    assert node.startswith("<cut: nested deeper") and depth < MAX_DEPTH


def test_odd_values_take_a_safe_text_form(logfile):
    logfile.configure()
    get_logger("x").info(
        "odd",
        raw=b"\xff\xfeok",
        tags={"a"},
        big=2**70,
        bad=BadRepr(),
        when=datetime(2026, 1, 2, tzinfo=UTC),
        id=uuid.UUID(int=1),
        amount=decimal.Decimal("1.10"),
        keys={1: "int", (1, 2): "tuple", None: "none"},
    )
    record = logfile.one()
    assert record["raw"] == "\\xff\\xfeok" and record["tags"] == ["a"] and record["big"] == str(2**70)
    assert record["bad"] == "<unrepresentable BadRepr object>"
    assert record["when"] == "2026-01-02T00:00:00+00:00" and record["id"] == str(uuid.UUID(int=1))
    assert record["amount"] == "Decimal('1.10')"
    assert record["keys"] == {"1": "int", "(1, 2)": "tuple", "None": "none"}


def test_a_failing_processor_still_gives_a_record(logfile):
    def broken(logger, name, ed):
        raise RuntimeError("processor bug")

    logfile.configure(processors=[broken])
    get_logger("x").info("survives")
    record = logfile.one()
    assert record["message"] == "survives" and "processor bug" in record["error.message"]


def _run(script: str, **popen) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(script)], capture_output=True, timeout=60, **popen)


@pytest.mark.slow
def test_full_disk_is_counted_and_reported_once():
    result = _run(
        """
        import logging
        from amebo_logging import configure_logging, get_logger, write_failures
        configure_logging(stream=open("/dev/full", "wb"), fmt="json")
        for i in range(5):
            get_logger("x").info("lost", i=i)
            logging.getLogger("y").error("lost too")
        print(write_failures())
        """
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == b"10"
    assert result.stderr.count(b"amebo_logging: could not write a log record") == 1
    assert b"No space left on device" in result.stderr


@pytest.mark.slow
def test_closed_stream_is_counted_not_raised():
    result = _run(
        """
        import io
        from amebo_logging import configure_logging, get_logger, write_failures
        stream = io.StringIO()
        configure_logging(stream=stream, fmt="json")
        stream.close()
        get_logger("x").info("after close")
        print(write_failures())
        """
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == b"1" and b"closed" in result.stderr


@pytest.mark.slow
def test_broken_pipe_is_counted_not_raised():
    read_end, write_end = os.pipe()
    os.close(read_end)  # nobody will ever read: every write gets EPIPE
    result = _run(
        f"""
        import os
        from amebo_logging import configure_logging, get_logger, write_failures
        configure_logging(stream=os.fdopen({write_end}, "wb"), fmt="json")
        for _ in range(3):
            get_logger("x").info("into a broken pipe")
        print(write_failures())
        """,
        pass_fds=(write_end,),
    )
    os.close(write_end)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == b"3" and b"BrokenPipeError" in result.stderr


def test_render_json_never_raises_for_hostile_mappings():
    class Hostile(dict):
        def items(self):
            raise RuntimeError("no items for you")

    line = render_json({"message": "m", "h": Hostile(a=1)})
    assert orjson.loads(line)["message"] == "m"
