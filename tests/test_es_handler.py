"""ElasticsearchHandler: in-process shipping that never blocks the application."""

from __future__ import annotations

import logging
import subprocess
import sys
import textwrap
import time

import pytest

from amebo_logging import ElasticsearchHandler, get_logger

pytestmark = pytest.mark.slow

TARGET = "logs-amebo-default"


@pytest.fixture
def handler_factory(es):
    made = []

    def make(**kw):
        kw.setdefault("flush_interval", 0.05)
        kw.setdefault("backoff_initial", 0.02)
        kw.setdefault("backoff_max", 0.1)
        h = ElasticsearchHandler(es.url, **kw)
        made.append(h)
        return h

    yield make
    for h in made:
        h.close_timeout = 0.5
        h.close()


def test_delivers_structlog_and_stdlib_records(es, logfile, handler_factory):
    handler = handler_factory()
    logfile.configure(elasticsearch=handler)
    log = get_logger("amebo.gists")
    for i in range(600):
        log.info("event_published", action="user.created", payload_size=i)
        logging.getLogger("amebo.access").info("GET /v1/events %d", i)
    assert handler.flush(timeout=30)
    docs = es.docs(TARGET)
    assert len(docs) == 1200 == len(logfile.records())  # every line also went to the stream
    assert sorted(d["payload_size"] for d in docs if d["message"] == "event_published") == list(range(600))
    assert all(d["service.name"] == "amebo" and d["@timestamp"].endswith("Z") for d in docs)
    assert handler.stats["dropped"] == 0 and handler.stats["delivered"] == 1200


def test_logging_calls_stay_fast_while_elasticsearch_is_slow(es, logfile, handler_factory):
    handler = handler_factory(queue_size=100, batch_size=10)
    logfile.configure(elasticsearch=handler)
    es.faults.delay = 0.5  # every bulk request takes half a second
    log = get_logger("amebo.gists")
    slowest = 0.0
    for i in range(300):
        started = time.perf_counter()
        log.info("while_slow", n=i)
        slowest = max(slowest, time.perf_counter() - started)
    es.faults.delay = 0
    # a call that waited for a request would take 0.5 s; none comes near it
    assert slowest < 0.1, f"a logging call took {slowest * 1000:.1f} ms"
    assert handler.stats["dropped"] > 0


def test_outage_drops_oldest_and_counts(es, logfile, handler_factory, capfd):
    handler = handler_factory(queue_size=100, batch_size=50)
    logfile.configure(elasticsearch=handler)
    es.stop()
    log = get_logger("amebo.gists")
    for i in range(1000):
        log.info("during_outage", n=i)
    stats = handler.stats
    assert stats["dropped"] >= 1000 - 100 - 50 and stats["queued"] <= 150
    es.start()
    assert handler.flush(timeout=30)
    delivered = sorted(d["n"] for d in es.docs(TARGET))
    assert len(set(delivered)) == len(delivered)
    assert set(range(900, 1000)) <= set(delivered)  # the newest survived; a batch in flight was retried
    assert len(delivered) + handler.stats["dropped"] == 1000  # everything else was dropped, and counted
    handler.close()
    err = capfd.readouterr().err
    assert "elasticsearch_handler_dropped" in err and '"dropped_total"' in err


def test_close_is_bounded_during_an_outage(es, logfile, handler_factory, capfd):
    handler = handler_factory(close_timeout=0.3)
    logfile.configure(elasticsearch=handler)
    es.stop()
    get_logger("x").info("lost_at_close")
    started = time.monotonic()
    handler.close()
    assert time.monotonic() - started < 5
    assert "elasticsearch_handler_closed_with_loss" in capfd.readouterr().err
    es.start()


def test_a_terminal_gets_console_lines_and_elasticsearch_json(es, logfile, handler_factory):
    handler = handler_factory()
    logfile.configure(fmt="console", elasticsearch=handler)
    get_logger("amebo.gists").info("event_published", action="user.created")
    logging.getLogger("amebo.access").warning("slow request %s", "/v1/events")
    assert handler.flush(timeout=30)
    text = logfile.path.read_text()
    assert "event_published" in text and not text.startswith("{")  # people read the stream
    docs = sorted(es.docs(TARGET), key=lambda d: d["message"])
    assert [d["message"] for d in docs] == ["event_published", "slow request /v1/events"]
    assert docs[0]["action"] == "user.created" and docs[1]["log.level"] == "warning"


def test_fork_safe(es, tmp_path):
    script = textwrap.dedent(f"""
        import logging, os, sys
        from amebo_logging import ElasticsearchHandler, configure_logging, get_logger
        handler = ElasticsearchHandler({es.url!r}, flush_interval=0.05)
        configure_logging(stream=open(os.devnull, "wb"), elasticsearch=handler)
        log = get_logger("amebo.worker")
        for i in range(50):
            log.info("before_fork", n=i)
        children = []
        for w in range(3):
            pid = os.fork()
            if pid == 0:
                for i in range(100):
                    log.info("in_child", worker=w, n=i)
                logging.shutdown()   # flushes the child's own queue
                os._exit(0)
            children.append(pid)
        for i in range(50):
            log.info("after_fork", n=i)
        for pid in children:
            os.waitpid(pid, 0)
        logging.shutdown()
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, timeout=120)
    assert result.returncode == 0, result.stderr.decode()[-2000:]
    docs = es.docs(TARGET)
    by = {}
    for d in docs:
        by.setdefault(d["message"], []).append(d)
    assert sorted(d["n"] for d in by["before_fork"]) == list(range(50))  # shipped once, by the parent
    assert sorted(d["n"] for d in by["after_fork"]) == list(range(50))
    assert len(by["in_child"]) == 300
    parent_pid = by["before_fork"][0]["process.pid"]
    assert {d["process.pid"] for d in by["before_fork"] + by["after_fork"]} == {parent_pid}
    child_pids = {d["process.pid"] for d in by["in_child"]}
    assert len(child_pids) == 3 and parent_pid not in child_pids
    assert len({(d["worker"], d["n"]) for d in by["in_child"]}) == 300
