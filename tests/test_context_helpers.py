"""Carrying the correlation id into threads, asyncio tasks and a daemon's delivery loop."""

from __future__ import annotations

import asyncio
import logging
import logging.config
import threading
from concurrent.futures import ThreadPoolExecutor

from amebo_logging import (
    correlation_scope,
    get_correlation_id,
    get_logger,
    parse_traceparent,
    set_correlation_id,
    uvicorn_log_config,
    with_current_context,
)


def test_threads_start_empty_unless_wrapped(logfile):
    logfile.configure()
    log = get_logger("amebo.worker")
    set_correlation_id("parent")
    plain = threading.Thread(target=lambda: log.info("plain"))
    wrapped = threading.Thread(target=with_current_context(lambda: log.info("wrapped")))
    for t in (plain, wrapped):
        t.start()
        t.join()
    with ThreadPoolExecutor(4) as pool:
        list(pool.map(with_current_context(lambda i: log.info("pooled", i=i)), range(8)))
    by_message = {}
    for r in logfile.records():
        by_message.setdefault(r["message"], set()).add(r.get("correlation_id"))
    assert by_message == {"plain": {None}, "wrapped": {"parent"}, "pooled": {"parent"}}


def test_asyncio_tasks_inherit_and_stay_isolated(logfile):
    logfile.configure()
    log = get_logger("amebo.tasks")

    async def child(i):
        with correlation_scope(f"task-{i}"):
            await asyncio.sleep(0)
            log.info("in_task", i=i)
        log.info("after_scope", i=i)

    async def main():
        set_correlation_id("outer")
        await asyncio.gather(*(asyncio.create_task(child(i)) for i in range(20)))
        return get_correlation_id()

    assert asyncio.run(main()) == "outer"
    for r in logfile.records():
        expected = f"task-{r['i']}" if r["message"] == "in_task" else "outer"
        assert r["correlation_id"] == expected


def test_daemon_loop_binds_a_fresh_id_per_delivery(logfile):
    logfile.configure()
    log = get_logger("amebo.aproko")
    seen = []
    for delivery in ("d1", "d2", "d3"):  # the documented daemon pattern
        with correlation_scope() as cid:
            seen.append(cid)
            log.info("delivering", gist=delivery)
    assert get_correlation_id() is None
    assert len(set(seen)) == 3
    assert [r["correlation_id"] for r in logfile.records()] == seen


def test_scope_restores_after_an_exception(logfile):
    logfile.configure()
    set_correlation_id("before")
    try:
        with correlation_scope("inside"):
            raise KeyError("x")
    except KeyError:
        pass
    assert get_correlation_id() == "before"


def test_traceparent_parsing_follows_the_spec():
    ok = parse_traceparent("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
    assert ok is not None and ok.trace_id == "4bf92f3577b34da6a3ce929d0e0e4736" and ok.flags == "01"
    assert ok.header() == "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    # a future version may append fields; version 00 may not
    assert parse_traceparent("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra") is not None
    for bad in (
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
        "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
        "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
        "",
        None,
        "garbage",
    ):
        assert parse_traceparent(bad) is None, bad


def test_uvicorn_log_config_leaves_records_to_us(logfile):
    logfile.configure()
    logging.config.dictConfig(uvicorn_log_config())
    logging.getLogger("uvicorn.error").info("Application startup complete.")
    assert [r["message"] for r in logfile.records()] == ["Application startup complete."]
    assert not logging.getLogger("uvicorn.error").handlers
