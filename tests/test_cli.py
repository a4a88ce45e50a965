"""``amebo-logship`` as an operator meets it: the real console script, as a subprocess, with its
exit code and message asserted; the exit-code table walked; help, config file, terminal output."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import orjson
import pytest

from amebo_logging.ship import formats
from amebo_logging.ship.errors import EXIT_CODES

from .fake_es import FakeElasticsearch
from .shipper_proc import on_terminal, record, write_lines

pytestmark = pytest.mark.slow

SCRIPT = str(Path(sys.executable).with_name("amebo-logship"))


def cli(*argv: str, env: dict[str, str] | None = None, stdin: str | None = None, timeout: float = 120):
    """Run the console script: (exit code, stdout, stderr)."""
    full = {k: v for k, v in os.environ.items() if not k.startswith(("AMEBO_LOGSHIP_", "AMEBO_LOG_"))}
    result = subprocess.run(
        [SCRIPT, *argv], capture_output=True, text=True, timeout=timeout, input=stdin, env={**full, **(env or {})}
    )
    return result.returncode, result.stdout, result.stderr


def error_line(err: str) -> str:
    lines = [x for x in err.splitlines() if x.startswith("amebo-logship: error:")]
    assert len(lines) == 1, err
    assert "Traceback" not in err
    return lines[0]


@pytest.fixture
def logs(tmp_path):
    d = tmp_path / "logs"
    d.mkdir()
    write_lines(d / "app.log", [record(i) for i in range(20)])
    return d


def ship_args(es_url: str, logs: Path, *extra: str) -> list[str]:
    return [
        "ship",
        str(logs / "*.log"),
        "--once",
        "--es-url",
        es_url,
        "--state-dir",
        str(logs.parent / "state"),
        "--backoff-initial",
        "0.05",
        "--backoff-max",
        "0.2",
        *extra,
    ]


# --- the exit-code table, walked ---------------------------------------------------------------


def test_0_done(es, logs):
    code, out, err = cli(*ship_args(es.url, logs))
    assert code == 0, err
    assert out.startswith("delivered 20 documents")


def test_the_command_starts_without_what_it_never_uses(logs):
    """`--version` loads no logging library at all, and a run never loads rich (structlog
    would, for pretty tracebacks the command does not render: 80 ms of every start)."""
    script = "import sys\nfrom amebo_logging.ship.cli import run\nsys.argv[0] = 'amebo-logship'\nrun()\n"
    version = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", script, "--version"], capture_output=True, text=True, timeout=60
    )
    assert version.returncode == 0 and "amebo-logship" in version.stdout, version.stderr
    imported = {line.rsplit("|", 1)[-1].strip() for line in version.stderr.splitlines()}
    assert not imported & {"structlog", "rich", "urllib3", "msgspec"}, sorted(imported)
    ran = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", script, *ship_args("http://127.0.0.1:9", logs, "--dry-run"),
         "--log-format", "console"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert ran.returncode == 0, ran.stderr[-2000:]
    imported = {line.rsplit("|", 1)[-1].strip() for line in ran.stderr.splitlines() if line.startswith("import time")}
    # (an import of rich is still tried, and fails: what it would load is not loaded)
    assert "structlog" in imported and not imported & {"rich.console", "rich.traceback", "pygments"}


def test_1_only_for_a_bug(logs):
    crash = (
        "import sys\nfrom amebo_logging.ship import shipper, cli\n"
        "def boom(self):\n    raise RuntimeError('an invariant broke')\n"
        "shipper.Shipper.run = boom\nsys.argv = ['amebo-logship', *sys.argv[1:]]\ncli.run()\n"
    )
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            crash,
            "ship",
            str(logs / "*.log"),
            "--once",
            "--dry-run",
            "--state-dir",
            str(logs.parent / "state"),
            "--log-format",
            "json",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    assert "internal error: RuntimeError: an invariant broke (a bug: please report it)" in result.stderr
    assert any(orjson.loads(x)["message"] == "internal_error" for x in result.stderr.splitlines() if x[:1] == "{")


def test_2_only_for_click_usage_errors():
    code, out, err = cli("ship", "--no-such-option")
    assert code == 2 and "No such option '--no-such-option'" in err


@pytest.mark.parametrize(
    ("env", "argv", "message"),
    [
        ({"AMEBO_LOG_FORMAT": "xml"}, [], "unknown log format 'xml' (from AMEBO_LOG_FORMAT): use json or console"),
        ({"AMEBO_LOG_LEVEL": "verbose"}, [], "unknown log level"),
        ({"AMEBO_LOGSHIP_BATCH_SIZE": "lots"}, [], "AMEBO_LOGSHIP_BATCH_SIZE: 'lots' is not a valid integer"),
        ({"AMEBO_LOGSHIP_BATCH_BYTES": "huge"}, [], "AMEBO_LOGSHIP_BATCH_BYTES: 'huge' is not a size"),
        ({}, ["--batch-bytes", "lots"], "--batch-bytes: 'lots' is not a size"),  # the same code from the flag
        ({}, ["--batch-size", "x"], "--batch-size: 'x' is not a valid integer"),
        ({}, ["--config", "/"], "--config: File '/' is a directory"),
        ({}, ["--data-stream", "Bad Name"], "data stream name 'Bad Name' must be lowercase"),
        ({}, ["--index", "a", "--data-stream", "logs-b-c"], "give --data-stream or --index, not both"),
    ],
)
def test_3_configuration(es, logs, env, argv, message):
    code, out, err = cli(*ship_args(es.url, logs, *argv), env=env)
    assert code == 3, err
    assert message in error_line(err)
    assert es.bulk_requests == 0  # refused before any document was sent


def test_3_a_directory_argument_says_what_to_give(logs):
    code, out, err = cli("ship", str(logs), "--once", "--dry-run")
    assert code == 3 and f"{logs} is a directory: give a glob of the files in it, e.g. '{logs}/*.log'" in err


def test_3_a_target_elasticsearch_would_refuse_stops_before_any_document(es, logs):
    code, out, err = cli(*ship_args(es.url, logs, "--data-stream", "logs-amebo-#1"))
    assert code == 3 and "may not contain '#'" in error_line(err) and es.bulk_requests == 0


def test_4_credentials_and_privileges_before_any_document(logs):
    with FakeElasticsearch(api_key="the-key", privileges=False) as es:
        code, out, err = cli(*ship_args(es.url, logs), env={"AMEBO_LOGSHIP_API_KEY": "wrong"})
        assert code == 4 and "refused the credentials (HTTP 401)" in error_line(err)
        code, out, err = cli(*ship_args(es.url, logs), env={"AMEBO_LOGSHIP_API_KEY": "the-key"})
        assert code == 4 and "may not create documents in logs-amebo-default" in error_line(err)
        assert "grant create_doc and auto_configure" in err and es.bulk_requests == 0


def test_5_corrupt_state_names_the_command_that_fixes_it_with_the_same_state_dir(es, logs, tmp_path):
    state = tmp_path / "custom state"
    assert cli(*ship_args(es.url, logs, "--state-dir", str(state)))[0] == 0
    for suffix in ("-wal", "-shm"):
        (state / f"state.sqlite3{suffix}").unlink(missing_ok=True)
    (state / "state.sqlite3").write_bytes(b"garbage" * 500)
    code, out, err = cli(*ship_args(es.url, logs, "--state-dir", str(state)))
    assert code == 5
    line = error_line(err)
    fix = re.search(r"`(amebo-logship reset-state --state-dir .*?)`", line).group(1)
    assert fix == f"amebo-logship reset-state --state-dir '{state}'"
    assert subprocess.run(f"{SCRIPT} {fix.split(' ', 1)[1]} --yes", shell=True, capture_output=True).returncode == 0
    code, out, err = cli(*ship_args(es.url, logs, "--state-dir", str(state)))
    assert code == 0 and "20 already there" in out  # everything again, absorbed as duplicates


def test_6_give_up_when_nothing_can_be_delivered(logs):
    started = time.monotonic()
    code, out, err = cli(*ship_args("http://127.0.0.1:9", logs, "--give-up-after", "2"))
    assert code == 6 and time.monotonic() - started < 20
    assert "did not accept documents for 2s" in out and "nothing is lost: run again to resume" in out
    assert err.count("Node <") == 0  # the client library's own retry lines stay out


@pytest.mark.parametrize(("sig", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_130_143_interrupted_with_lines_left(es, logs, sig, code):
    write_lines(logs / "big.log", [record(i, pad="x" * 200) for i in range(100, 40_100)])
    es.faults.delay = 0.2
    # (two requests in flight at most, so two batches read ahead: lines are surely left unread
    # when the signal comes; with the default 64, a fast machine read the whole file first)
    proc = subprocess.Popen(
        [SCRIPT, *ship_args(es.url, logs, "--batch-size", "500", "--max-in-flight", "2")],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    while es.bulk_requests < 2:
        time.sleep(0.01)
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == code, err
    assert re.search(
        rf"interrupted by {signal.Signals(sig).name}: [\d.]+ KiB of 1 file not shipped; run again", out
    ) or re.search(rf"interrupted by {signal.Signals(sig).name}: [\d.]+ MiB of 1 file not shipped; run again", out)


def test_the_help_table_is_the_exit_code_table():
    code, out, _ = cli("--help")
    assert code == 0
    for number, meaning in EXIT_CODES:
        assert re.search(rf"^\s+{number}\s+{re.escape(meaning)}$", out, re.M), meaning
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    for number, _ in EXIT_CODES:
        assert f"| {number} |" in readme or f"| {number}, " in readme


# --- messages that name the fix ------------------------------------------------------------------


def test_https_against_plain_http_says_use_http(es, logs):
    url = es.url.replace("http://", "https://")
    code, out, err = cli(*ship_args(url, logs))
    assert code == 3 and "speaks plain HTTP, not TLS" in err and f"use {es.url}" in error_line(err)


@pytest.fixture
def tls_es(tmp_path):
    """The test cluster over TLS, its certificate (for localhost and 127.0.0.1) signed by a CA
    of the test's own, whose certificate is at tmp_path/'ca.pem'."""
    import ssl

    import trustme

    ca = trustme.CA()
    ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("localhost", "127.0.0.1").configure_cert(context)
    other = trustme.CA()  # a CA that did not sign it
    other.cert_pem.write_to_path(str(tmp_path / "other-ca.pem"))
    with FakeElasticsearch(tls=context) as server:
        yield server


def test_tls_is_verified_by_default_and_ca_certs_or_insecure_are_the_ways_in(tls_es, logs, tmp_path):
    """TLS verification is on unless --insecure: an unknown CA is refused, naming --ca-certs;
    the right CA ships (every line, over TLS); the wrong CA is named; with --insecure and no
    CA given, the unknown CA is let through (the run connects and ends 0)."""
    code, out, err = cli(*ship_args(tls_es.url, logs))
    assert code == 3 and "certificate verify failed" in err and "--ca-certs FILE" in error_line(err), err
    assert tls_es.bulk_requests == 0
    code, out, err = cli(*ship_args(tls_es.url, logs, "--ca-certs", str(tmp_path / "other-ca.pem")))
    assert code == 3 and f"not signed by the CA in --ca-certs {tmp_path / 'other-ca.pem'}" in error_line(err)
    code, out, err = cli("check", "--es-url", tls_es.url, "--ca-certs", str(tmp_path / "ca.pem"))
    assert code == 0 and "over TLS, verified" in out, out + err
    code, out, err = cli(*ship_args(tls_es.url, logs, "--ca-certs", str(tmp_path / "ca.pem")))
    assert code == 0, err
    assert sorted(d["seq"] for d in tls_es.docs()) == list(range(20))
    code, out, err = cli(*ship_args(tls_es.url.replace("127.0.0.1", "localhost"), logs, "--insecure"))
    assert code == 0, err


def test_a_certificate_for_another_host_is_refused_naming_the_host(tmp_path, logs):
    import ssl

    import trustme

    ca = trustme.CA()
    ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("es.example.com").configure_cert(context)
    with FakeElasticsearch(tls=context) as server:
        code, out, err = cli(*ship_args(server.url, logs, "--ca-certs", str(tmp_path / "ca.pem")))
        assert code == 3 and "is not issued for that host name" in error_line(err), err
        assert server.bulk_requests == 0


def test_missing_ca_file_says_so(es, logs):
    code, out, err = cli(*ship_args(es.url, logs, "--ca-certs", "/missing.pem"))
    assert code == 3 and "--ca-certs /missing.pem: no such file" in error_line(err)


def test_a_url_without_a_scheme_suggests_one(logs):
    code, out, err = cli(*ship_args("localhost:9200", logs))
    assert code == 3 and "has no scheme: use http://localhost:9200" in error_line(err)


def test_several_nodes_comma_separated_in_the_variable(es, logs):
    argv = ["ship", str(logs / "*.log"), "--once", "--state-dir", str(logs.parent / "state")]
    code, out, err = cli(*argv, env={"AMEBO_LOGSHIP_ES_URL": f"{es.url},{es.url.replace('127.0.0.1', 'localhost')}"})
    assert code == 0, err


def test_bad_ilm_age_is_refused_before_anything_is_sent(es):
    code, out, err = cli("setup", "--es-url", es.url, "--ilm-delete-after", "ninety")
    assert code == 3 and "not an Elasticsearch time value: use a number and a unit, e.g. 90d" in error_line(err)
    assert not es.store.ilm_policies


# --- help that teaches -----------------------------------------------------------------------------


@pytest.mark.parametrize("command", ["ship", "check", "setup", "status", "reset-state"])
def test_help_shows_variables_defaults_and_examples(command):
    import click

    from amebo_logging.ship.cli import main

    code, out, _ = cli(command, "--help")
    assert code == 0 and "Examples:" in out
    assert "AMEBO_LOGSHIP_* variable, else the --config file" in re.sub(r"\s+", " ", out)
    options_text = out.split("Options:", 1)[1]
    blocks = {}  # each option's own lines of help
    for block in re.split(r"\n(?=  -)", options_text):
        flags = re.findall(r"--[a-z][a-z-]+", block.split("  ", 2)[1] if block.startswith("  ") else block)
        if flags:
            blocks[flags[0]] = re.sub(r"\s+", " ", block)
    for param in main.commands[command].params:
        if not isinstance(param, click.Option) or param.name in ("verbose", "quiet", "yes", "version", "help"):
            continue
        flag = next(o for o in param.opts if o.startswith("--"))
        assert param.envvar == "AMEBO_LOGSHIP_" + flag[2:].upper().replace("-", "_"), flag
        assert f"env var: {param.envvar}" in blocks[flag], (command, flag)
        if param.show_default:
            assert "default:" in blocks[flag], (command, flag)
    code, out, _ = cli(command, "--version")
    assert code == 0 and out.startswith("amebo-logship (amebo-logging) ")
    # and what it reads Docker's logs with (an operator's first check of a slow install)
    assert ("unwrapped in C" in out) == (formats.c_unwrap is not None), out


def test_sizes_are_human():
    code, out, _ = cli("ship", "--help")
    assert "default: 10MiB" in re.sub(r"\s+", " ", out) and "10485760" not in out


# --- the config file -------------------------------------------------------------------------------


def test_precedence_option_over_variable_over_file_over_default(es, logs, tmp_path):
    config = tmp_path / "amebo-logship.toml"
    config.write_text(
        f'es-url = ["{es.url}"]\n[ship]\ndata-stream = "logs-amebo-file"\nbatch-size = 3\n'
        f'state-dir = "{tmp_path / "state"}"\n'
    )
    base = ["ship", str(logs / "*.log"), "--once", "--config", str(config)]
    assert cli(*base)[0] == 0
    assert len(es.docs("logs-amebo-file")) == 20 and es.bulk_requests == 7  # batch-size 3 from the file
    write_lines(logs / "app.log", [record(i) for i in range(20, 30)])
    assert cli(*base, env={"AMEBO_LOGSHIP_DATA_STREAM": "logs-amebo-env"})[0] == 0
    assert len(es.docs("logs-amebo-env")) == 10
    write_lines(logs / "app.log", [record(i) for i in range(30, 35)])
    assert cli(*base, "--data-stream", "logs-amebo-cli", env={"AMEBO_LOGSHIP_DATA_STREAM": "logs-amebo-env"})[0] == 0
    assert len(es.docs("logs-amebo-cli")) == 5


def test_a_bad_config_file_names_the_file_and_the_key(tmp_path):
    config = tmp_path / "c.toml"
    config.write_text("[ship]\nbatch-sise = 3\n")
    code, out, err = cli("ship", "x.log", "--config", str(config))
    assert code == 3 and f"{config}: unknown key [ship] batch-sise" in error_line(err)
    config.write_text('[ship]\nbatch-size = "many"\n')
    code, out, err = cli("ship", "x.log", "--config", str(config))
    assert code == 3 and f"{config}: batch-size: 'many' is not a valid integer" in error_line(err)


def test_the_config_file_takes_one_es_url_as_a_string(es, logs, tmp_path):
    write_lines(logs / "app.log", [record(i) for i in range(3)])
    config = tmp_path / "c.toml"
    config.write_text(f'es-url = "{es.url}"\n')  # as people write it: not a list
    argv = ["ship", str(logs / "*.log"), "--once", "--state-dir", str(logs.parent / "state"), "--config", str(config)]
    code, out, err = cli(*argv)
    assert code == 0 and "delivered 23 documents" in out, out + err  # the fixture's 20, and these 3


# --- reset-state and status -------------------------------------------------------------------------


def test_reset_state_answers_truthfully(es, logs):
    state = logs.parent / "state"
    code, out, err = cli("reset-state", "--state-dir", str(state))
    assert code == 0 and out.strip() == f"nothing to reset: no offsets in {state}"
    assert cli(*ship_args(es.url, logs))[0] == 0
    code, out, err = cli("reset-state", "--state-dir", str(state), stdin="n\n")
    assert code == 0 and "nothing was reset" in out and (state / "state.sqlite3").exists()
    code, out, err = cli("reset-state", "--state-dir", str(state), stdin="")  # no terminal, no answer
    assert code == 3 and "pass --yes" in error_line(err) and (state / "state.sqlite3").exists()
    from amebo_logging.ship.state import StateStore

    holder = StateStore(state)  # a running shipper holds the directory
    try:
        code, out, err = cli("reset-state", "--state-dir", str(state), "--yes")
        assert code == 5 and f"(PID {os.getpid()}) is using the state directory" in error_line(err)
    finally:
        holder.close()
    code, out, err = cli("reset-state", "--state-dir", str(state), stdin="y\n")
    assert code == 0 and "were reset" in out and not (state / "state.sqlite3").exists()


# --- the shipper's own output: patterns, -v/-q, a terminal --------------------------------------------


def test_double_star_is_recursive(es, tmp_path):
    for sub in ("a", "a/b", "a/b/c"):
        (tmp_path / "logs" / sub).mkdir(parents=True)
        write_lines(tmp_path / "logs" / sub / "x.log", [record(len(sub))])
    code, out, err = cli(
        "ship",
        str(tmp_path / "logs" / "**" / "*.log"),
        "--once",
        "--es-url",
        es.url,
        "--state-dir",
        str(tmp_path / "state"),
    )
    assert code == 0 and "delivered 3 documents" in out


def test_quiet_and_verbose(logs):
    argv = ["ship", str(logs / "*.log"), "--once", "--dry-run", "--log-format", "json"]
    _, _, quiet = cli(*argv, "-q")
    assert all(orjson.loads(x)["log.level"] in ("warning", "error") for x in quiet.splitlines() if x[:1] == "{")
    _, _, verbose = cli(*argv, "-v")
    assert any(orjson.loads(x)["log.level"] == "debug" for x in verbose.splitlines() if x[:1] == "{")


def test_on_a_terminal_logs_are_for_people_and_never_cut_the_progress_bar(es, logs):
    write_lines(logs / "big.log", [record(i, pad="x" * 100) for i in range(100, 30_100)])
    es.faults.delay = 0.05
    code, seen = on_terminal(
        [SCRIPT, *ship_args(es.url, logs, "--batch-size", "2000")],
        env={k: v for k, v in os.environ.items() if not k.startswith("AMEBO_")},
    )
    assert code == 0
    text = seen.decode()
    assert "shipping_started" in text and '{"@timestamp"' not in text  # console lines, not JSON
    assert re.search(r"\[#*\.*\] +[\d.]+ (B|KiB|MiB) / [\d.]+ MiB +[\d,]+ docs/s +ETA", text)
    # every log line starts on a line of its own: never glued to the bar
    events = list(re.finditer(r"(shipping_started|file_opened|elasticsearch_reachable|shipping_stopped)", text))
    assert len(events) >= 4
    for m in events:
        before = text[: m.start()]
        line_start = max(before.rfind("\n"), before.rfind("\r\x1b[2K"))
        assert "docs/s" not in text[line_start : m.start()], text[line_start : m.end()]
