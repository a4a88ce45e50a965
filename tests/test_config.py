"""configure_logging(): settings and their variables, idempotence, files, other handlers."""

from __future__ import annotations

import io
import logging
import os
import pty
import subprocess
import sys
import textwrap

import orjson
import pytest

from amebo_logging import configure_logging, get_logger
from amebo_logging.stdlib import HANDLER_TAG


def ours(root: logging.Logger | None = None) -> list[logging.Handler]:
    return [h for h in (root or logging.getLogger()).handlers if getattr(h, HANDLER_TAG, False)]


def test_environment_variables_are_read(logfile, monkeypatch):
    monkeypatch.setenv("AMEBO_LOG_LEVEL", "debug")
    monkeypatch.setenv("AMEBO_SERVICE_NAME", "amebo-eu")
    monkeypatch.setenv("AMEBO_SERVICE_VERSION", "1.2.3")
    monkeypatch.setenv("AMEBO_ENVIRONMENT", "staging")
    config = logfile.configure(fmt=None)
    assert config.level == logging.DEBUG and config.fmt == "json"
    get_logger("x").debug("visible")
    record = logfile.one()
    assert (record["service.name"], record["service.version"], record["service.environment"]) == (
        "amebo-eu",
        "1.2.3",
        "staging",
    )


def test_arguments_beat_environment(logfile, monkeypatch):
    monkeypatch.setenv("AMEBO_LOG_LEVEL", "debug")
    monkeypatch.setenv("AMEBO_LOG_FORMAT", "console")
    config = logfile.configure(level="error", fmt="json")
    assert config.level == logging.ERROR and config.fmt == "json"


@pytest.mark.parametrize("bad", ["loud", "INFOO", "5x"])
def test_unknown_level_raises_naming_the_accepted_ones(logfile, bad):
    with pytest.raises(ValueError, match="debug, info, warning, error, critical"):
        logfile.configure(level=bad)


def test_unknown_level_in_environment_raises(logfile, monkeypatch):
    monkeypatch.setenv("AMEBO_LOG_LEVEL", "verbose")
    with pytest.raises(ValueError, match="AMEBO_LOG_LEVEL"):
        logfile.configure()


def test_amebo_text_format_means_console(logfile, monkeypatch):
    monkeypatch.setenv("AMEBO_LOG_FORMAT", "text")
    assert logfile.configure(fmt=None).fmt == "console"
    with pytest.raises(ValueError, match="json or console"):
        logfile.configure(fmt="xml")


def test_tty_defaults_to_console_and_a_file_to_json(logfile):
    main, secondary = pty.openpty()
    with os.fdopen(secondary, "w", closefd=True) as tty:
        config = configure_logging(stream=tty)
        assert config.fmt == "console"
        get_logger("x").info("on_a_terminal", a=1)
        output = os.read(main, 4096)
    os.close(main)
    assert b"on_a_terminal" in output and b"\x1b[" in output  # coloured
    assert logfile.configure(fmt=None).fmt == "json"


def test_log_file_variable_appends(tmp_path, logfile, monkeypatch):
    target = tmp_path / "amebo.log"
    target.write_bytes(b'{"existing":true}\n')
    monkeypatch.setenv("AMEBO_LOG_FILE", str(target))
    config = configure_logging(fmt="json")
    assert config.target == str(target)
    get_logger("x").info("appended")
    lines = target.read_bytes().splitlines()
    assert lines[0] == b'{"existing":true}'
    assert orjson.loads(lines[1])["message"] == "appended"


def test_unwritable_log_file_says_which(tmp_path, logfile, monkeypatch):
    monkeypatch.setenv("AMEBO_LOG_FILE", str(tmp_path / "missing-dir" / "a.log"))
    with pytest.raises(OSError, match="AMEBO_LOG_FILE"):
        configure_logging()


def test_idempotent_one_handler_and_no_line_twice(logfile):
    logfile.configure()
    logfile.configure()
    logfile.configure(level="debug")
    assert len(ours()) == 1
    logging.getLogger("amebo.gists").info("once")
    get_logger("x").info("also_once")
    assert [r["message"] for r in logfile.records()] == ["once", "also_once"]


def test_other_handlers_stay_and_caplog_still_captures(logfile, caplog):
    keeper = logging.NullHandler()
    root = logging.getLogger()
    root.addHandler(keeper)
    try:
        before = [h for h in root.handlers if not getattr(h, HANDLER_TAG, False)]
        logfile.configure()
        logfile.configure()
        after = [h for h in root.handlers if not getattr(h, HANDLER_TAG, False)]
        assert after == before and keeper in after
        with caplog.at_level(logging.INFO):
            logging.getLogger("amebo.events").warning("captured %s", "too")
        assert caplog.records[-1].getMessage() == "captured too"
        assert logfile.one()["message"] == "captured too"
    finally:
        root.removeHandler(keeper)


def test_replaces_amebo_09s_own_handler_and_console_duplicates(logfile):
    root = logging.getLogger()
    legacy = logging.StreamHandler()  # what amebo.utils.logs.configure_logging() installs
    legacy._amebo_log_handler = True
    basic = logging.StreamHandler(sys.stderr)  # what logging.basicConfig() installs
    root.addHandler(legacy)
    root.addHandler(basic)
    try:
        logfile.configure()
        assert legacy not in root.handlers and basic not in root.handlers
    finally:
        for h in (legacy, basic):
            root.removeHandler(h)


@pytest.mark.slow
def test_uvicorn_loggers_propagate_once(logfile):
    uv = logging.getLogger("uvicorn.access")
    own = logging.StreamHandler(sys.stdout)
    uv.addHandler(own)
    uv.propagate = False
    try:
        logfile.configure()
        assert own not in uv.handlers and uv.propagate
        uv.info('%s - "%s %s HTTP/%s" %d', "127.0.0.1:5000", "GET", "/v1/events?x=1", "1.1", 200)
        record = logfile.one()
        assert record["log.logger"] == "uvicorn.access"
        assert record["http.request.method"] == "GET" and record["url.path"] == "/v1/events"
        assert record["http.response.status_code"] == 200 and record["client.ip"] == "127.0.0.1"
    finally:
        uv.removeHandler(own)


@pytest.mark.slow
def test_several_processes_appending_to_one_file_never_interleave(tmp_path):
    """Four processes each write 2,000 records of up to 64 KiB through AMEBO_LOG_FILE."""
    target = tmp_path / "shared.log"
    script = textwrap.dedent(
        """
        import sys
        from amebo_logging import configure_logging, get_logger
        configure_logging()
        log = get_logger("amebo.writer")
        me = int(sys.argv[1])
        for i in range(2000):
            log.info("written", writer=me, seq=i, blob="x" * ((i * 7919) % 65536))
        """
    )
    env = {**os.environ, "AMEBO_LOG_FILE": str(target), "AMEBO_LOG_FORMAT": "json"}
    procs = [subprocess.Popen([sys.executable, "-c", script, str(n)], env=env) for n in range(4)]
    for p in procs:
        assert p.wait(timeout=120) == 0
    seen: dict[int, list[int]] = {n: [] for n in range(4)}
    data = target.read_bytes()
    assert data.endswith(b"\n")
    for line in data.splitlines():
        record = orjson.loads(line)
        seen[record["writer"]].append(record["seq"])
    assert all(seqs == list(range(2000)) for seqs in seen.values())


def test_text_stream_without_a_descriptor(logfile):
    buffer = io.StringIO()
    configure_logging(stream=buffer, fmt="json")
    get_logger("x").info("to_text", n=1)
    logging.getLogger("y").info("stdlib")
    lines = buffer.getvalue().splitlines()
    assert [orjson.loads(line)["message"] for line in lines] == ["to_text", "stdlib"]


def test_console_format_has_the_same_fields(logfile):
    buffer = io.StringIO()
    configure_logging(stream=buffer, fmt="console")
    log = get_logger("amebo.gists")
    log.info("event_published", action="user.created", payload_size=123)
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        log.exception("failed")
    text = buffer.getvalue()
    assert "event_published" in text and "action=user.created" in text and "payload_size=123" in text
    assert "amebo.gists" in text and "RuntimeError: boom" in text and "Traceback" in text
    assert "\x1b[" not in text  # not a terminal: no colours


def test_reopen_after_rotation_by_rename(tmp_path, logfile, monkeypatch):
    from amebo_logging import reopen_log_file

    target = tmp_path / "amebo.log"
    monkeypatch.setenv("AMEBO_LOG_FILE", str(target))
    configure_logging(fmt="json")
    log = get_logger("x")
    log.info("before_rotation")
    target.rename(tmp_path / "amebo.log.1")
    log.info("still_old_file")  # the descriptor follows the renamed file until reopened
    reopen_log_file()
    log.info("after_reopen")
    logging.getLogger("y").info("stdlib_after_reopen")
    old = [orjson.loads(x)["message"] for x in (tmp_path / "amebo.log.1").read_bytes().splitlines()]
    new = [orjson.loads(x)["message"] for x in target.read_bytes().splitlines()]
    assert old == ["before_rotation", "still_old_file"]
    assert new == ["after_reopen", "stdlib_after_reopen"]


def test_reconfiguring_while_threads_log_never_splits_a_record(tmp_path, logfile):
    """Each configuration sends its service name to its own file: a record built with one
    and written with the other would land in the wrong file."""
    import threading

    import orjson

    from amebo_logging import configure_logging, get_logger

    files = {name: open(tmp_path / f"{name}.log", "ab") for name in ("alpha", "beta")}  # noqa: SIM115
    stop = threading.Event()

    calls = [0] * 4  # per thread: records logged so far

    def log_structlog(n: int) -> None:
        log = get_logger("worker")
        while not stop.is_set():
            log.info("tick", worker=n, payload={"n": n, "items": list(range(20))})
            calls[n] += 1

    def log_stdlib(n: int) -> None:
        std = logging.getLogger("worker.std")
        while not stop.is_set():
            std.info("tick %d", n, extra={"worker": n})
            calls[n] += 1

    threads = [threading.Thread(target=fn, args=(i,)) for i, fn in enumerate([log_structlog, log_stdlib] * 2)]
    configure_logging(stream=files["alpha"], fmt="json", service_name="alpha")
    for t in threads:
        t.start()
    try:
        # at least 200 reconfigurations, and on until the threads logged 2,000 records among
        # them (bounded: however slow the machine, this is no timing test)
        i = 0
        while (i < 200 or sum(calls) < 2000) and i < 100_000:
            name = "beta" if i % 2 else "alpha"
            configure_logging(stream=files[name], fmt="json", service_name=name, level="info")
            i += 1
    finally:
        stop.set()
        for t in threads:
            t.join()
        for f in files.values():
            f.close()
    total = 0
    for name in files:
        for line in (tmp_path / f"{name}.log").read_bytes().splitlines():
            record = orjson.loads(line)  # whole, valid JSON
            assert record["service.name"] == name
            total += 1
    assert total > 1000
