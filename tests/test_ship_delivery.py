"""amebo-logship ship: every complete line becomes exactly one document; bad lines too."""

from __future__ import annotations

import os
import socket

import orjson
import pytest

from .far_end import TARGET, wait_docs
from .shipper_proc import record, run_ship, write_lines

pytestmark = pytest.mark.slow


def ship_once(es, ship_dir, *extra, pattern="*.log"):
    return run_ship(
        [
            "ship",
            str(ship_dir / pattern),
            "--once",
            "--es-url",
            es.url,
            "--state-dir",
            str(ship_dir.parent / "state"),
            *extra,
        ]
    )


def by_offset(es):
    return {d["log.offset"]: d for d in es.docs(TARGET)}


def test_every_line_once_with_metadata(es, ship_dir):
    lines = [record(i) for i in range(2500)]
    write_lines(ship_dir / "app.log", lines)
    code, out, err = ship_once(es, ship_dir, "--batch-size", "300")
    assert code == 0, err
    assert "2500 lines read" in out and "delivered 2500 documents" in out
    docs = by_offset(es)
    assert len(docs) == 2500 == len(es.docs(TARGET))
    offset = 0
    for i, line in enumerate(lines):
        doc = docs[offset]
        assert doc["seq"] == i
        assert doc["log.file.path"] == str(ship_dir / "app.log")
        assert doc["host.name"] == socket.gethostname()
        assert doc["@timestamp"] == "2026-11-27T10:00:00.000000Z"
        offset += len(line)
    ids = es.ids(TARGET)  # <file id>-<offset>: one file, so one prefix, and the offsets
    assert len({i.rsplit("-", 1)[0] for i in ids}) == 1
    assert {int(i.rsplit("-", 1)[1]) for i in ids} == set(docs)


def test_gzipped_bodies_arrive_once_through_push_back_and_item_retries(es, ship_dir):
    """--compress gzip: whole requests refused (429, 503) are sent again as they are held,
    gzipped; the documents refused one by one go again alone, plain; each arrives once."""
    write_lines(ship_dir / "app.log", [record(i) for i in range(3000)])
    es.fail_requests(429, 503)
    refused_once: set[str] = set()

    def rule(doc_id, doc):
        if doc.get("seq", 1) % 97 == 0 and doc_id not in refused_once:
            refused_once.add(doc_id)
            return 429
        return None

    es.fail_items(rule)
    code, out, err = ship_once(es, ship_dir, "--compress", "gzip", "--batch-size", "300")
    assert code == 0, err
    assert sorted(d["seq"] for d in es.docs(TARGET)) == list(range(3000))
    assert len(refused_once) == 31 and es.gzip_requests >= 12  # ten batches, two sent twice


def test_bad_lines_are_shipped_never_dropped(es, ship_dir):
    big = b'{"message":"' + b"x" * (5 * 1024 * 1024) + b'"}'
    content = [
        b"plain text, not json\n",
        b"\n",
        b'{"no_timestamp":true}\n',
        b"[1, 2, 3]\n",
        b'\xff\xfe{"bad":"utf8"}\n',
        b'{"a":"nul\x00byte"}\n',
        b"\r\n",
        record(1).rstrip(b"\n") + b"\r\n",
        big + b"\n",
        b'  {"leading":"blanks"}\n',
        b'{"log.offset":"mine"}\n',
        record(2),
        b'{"unfinished": tr',
    ]
    write_lines(ship_dir / "bad.log", content)
    code, out, err = ship_once(es, ship_dir)
    assert code == 0, err
    assert out.count("of a line not complete yet") == 1
    docs = es.docs(TARGET)
    assert len(docs) == 10  # 13 pieces: 2 empty lines and the unfinished tail are not documents
    by_msg = {d.get("message"): d for d in docs}
    assert by_msg["plain text, not json"]["error.message"].startswith("the line is not JSON")
    assert by_msg["[1, 2, 3]"]["error.message"] == "the line is JSON but not an object"
    assert by_msg['\\xff\\xfe{"bad":"utf8"}']["error.message"].startswith("the line is not valid UTF-8")
    assert by_msg['{"a":"nul\\x00byte"}']["error.message"] == "the line contains NUL bytes"
    for d in docs:
        assert {"@timestamp", "log.file.path", "log.offset", "host.name"} <= d.keys()
    no_ts = next(d for d in docs if d.get("no_timestamp"))
    assert no_ts["@timestamp"].endswith("Z")
    crlf = next(d for d in docs if d.get("seq") == 1)
    assert "error.message" not in crlf
    truncated = next(d for d in docs if "truncated" in d.get("tags", []))
    assert len(truncated["message"].encode()) <= 1024 * 1024
    assert "over --max-line-bytes" in truncated["error.message"]
    assert next(d for d in docs if d.get("leading") == "blanks")
    assert next(d for d in docs if d.get("seq") == 2)
    assert all(isinstance(d["log.offset"], int) for d in docs)  # a line's own log.offset is replaced


def test_partial_last_line_ships_once_complete(es, ship_dir):
    path = ship_dir / "app.log"
    write_lines(path, [record(0), record(1).rstrip(b"\n")])
    code, out, _ = ship_once(es, ship_dir)
    assert code == 0 and out.count("of a line not complete yet") == 1
    assert [d["seq"] for d in es.docs(TARGET)] == [0]
    write_lines(path, [b"\n", record(2)])
    code, out, _ = ship_once(es, ship_dir)
    assert code == 0 and "without its newline" not in out
    assert sorted(d["seq"] for d in es.docs(TARGET)) == [0, 1, 2]


def test_rerun_ships_nothing_and_lost_state_adds_no_duplicate(es, ship_dir):
    write_lines(ship_dir / "app.log", [record(i) for i in range(1000)])
    assert ship_once(es, ship_dir)[0] == 0
    code, out, _ = ship_once(es, ship_dir)
    assert code == 0 and "0 lines read" in out
    code, out, err = run_ship(["reset-state", "--yes", "--state-dir", str(ship_dir.parent / "state")])
    assert code == 0, err
    code, out, err = ship_once(es, ship_dir)
    assert code == 0, err
    assert "delivered 0 documents" in out and "1000 already there" in out
    assert len(es.docs(TARGET)) == 1000


def test_permanent_item_failures_go_to_the_dead_letter(es, ship_dir):
    es.store.index_templates["amebo"] = {
        "index_patterns": ["logs-amebo-*"],
        "priority": 200,
        "data_stream": {},
        "template": {"mappings": {"properties": {"payload_size": {"type": "long"}, "@timestamp": {"type": "date"}}}},
    }
    lines = [record(i, payload_size="not a number" if i % 100 == 7 else i) for i in range(1000)]
    write_lines(ship_dir / "app.log", lines)
    dead = ship_dir.parent / "dead.ndjson"
    code, out, err = ship_once(es, ship_dir, "--dead-letter", str(dead))
    assert code == 0, err
    assert "delivered 990 documents" in out and "10 dead-lettered" in out
    entries = [orjson.loads(x) for x in dead.read_bytes().splitlines()]
    assert sorted(orjson.loads(e["line"])["seq"] for e in entries) == [i for i in range(1000) if i % 100 == 7]
    for e in entries:
        assert e["status"] == 400 and e["error"]["type"] == "document_parsing_exception"
        assert "payload_size" in e["error"]["reason"]
        assert e["log.file.path"].endswith("app.log") and isinstance(e["log.offset"], int)
        assert orjson.loads(e["document"])["log.offset"] == e["log.offset"]
    assert len(es.docs(TARGET)) == 990
    # a rerun neither re-sends nor re-dead-letters them
    code, out, _ = ship_once(es, ship_dir, "--dead-letter", str(dead))
    assert "0 lines read" in out and len(dead.read_bytes().splitlines()) == 10


def test_index_target_and_exclude(es, ship_dir):
    write_lines(ship_dir / "a.log", [record(1)])
    write_lines(ship_dir / "skip.log", [record(2)])
    code, _, err = ship_once(es, ship_dir, "--index", "amebo-logs", "--exclude", str(ship_dir / "skip*"))
    assert code == 0, err
    assert [d["seq"] for d in es.docs("amebo-logs")] == [1]


def test_several_files_and_new_ones_while_running(es, ship_dir):
    from .shipper_proc import ShipperProcess

    write_lines(ship_dir / "a.log", [record(i) for i in range(100)])
    proc = ShipperProcess(
        [
            "ship",
            str(ship_dir / "*.log"),
            "--es-url",
            es.url,
            "--state-dir",
            str(ship_dir.parent / "state"),
            "--scan-interval",
            "0.1",
            "--flush-interval",
            "0.05",
        ]
    )
    try:
        proc.event("file_opened")
        write_lines(ship_dir / "b.log", [record(1000 + i) for i in range(100)])
        proc.wait_for(lambda r: r.get("message") == "file_opened" and r["log.file.path"].endswith("b.log"))
        wait_docs(es, 200)
        proc.signal()
        assert proc.wait() == 0
    finally:
        proc.kill()
    assert sorted(d["seq"] for d in es.docs(TARGET)) == list(range(100)) + list(range(1000, 1100))


# --- operator errors -------------------------------------------------------------------------


@pytest.mark.parametrize("url", ["localhost:9200", "ftp://x", "http://", "http://h:notaport"])
def test_bad_url_is_one_line_and_exit_3(ship_dir, url):
    write_lines(ship_dir / "a.log", [record(1)])
    code, out, err = run_ship(
        ["ship", str(ship_dir / "*.log"), "--es-url", url, "--state-dir", str(ship_dir.parent / "state")]
    )
    assert code == 3
    lines = [x for x in err.splitlines() if x.startswith("amebo-logship: error:")]
    assert len(lines) == 1 and "Traceback" not in err


def test_no_files_matched_is_exit_3(es, ship_dir):
    code, _, err = run_ship(
        ["ship", str(ship_dir / "*.nothing"), "--es-url", es.url, "--state-dir", str(ship_dir.parent / "state")]
    )
    assert code == 3 and "no files match" in err and "Traceback" not in err


def test_unusable_state_dir_is_exit_5(es, ship_dir, tmp_path):
    write_lines(ship_dir / "a.log", [record(1)])
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("x")
    code, _, err = run_ship(
        ["ship", str(ship_dir / "*.log"), "--es-url", es.url, "--state-dir", str(blocker / "state")]
    )
    assert code == 5 and "state directory" in err and "Traceback" not in err


def test_corrupt_and_missing_state_are_reported_not_reset(es, ship_dir):
    write_lines(ship_dir / "a.log", [record(1)])
    state = ship_dir.parent / "state"
    assert ship_once(es, ship_dir)[0] == 0
    db = state / "state.sqlite3"
    for suffix in ("-wal", "-shm"):
        (state / f"state.sqlite3{suffix}").unlink(missing_ok=True)
    db.write_bytes(b"this is not a database" * 100)
    code, _, err = ship_once(es, ship_dir)
    assert code == 5 and "corrupt" in err and "reset-state" in err
    db.unlink()
    code, _, err = ship_once(es, ship_dir)
    assert code == 5 and "missing" in err


def test_refused_credentials_are_exit_4_and_secrets_never_printed(ship_dir):
    from .fake_es import FakeElasticsearch

    write_lines(ship_dir / "a.log", [record(1)])
    with FakeElasticsearch(username="amebo", password="right-password") as secured:
        env = {"AMEBO_LOGSHIP_USERNAME": "amebo", "AMEBO_LOGSHIP_PASSWORD": "wrong-s3cret"}
        code, out, err = run_ship(
            [
                "ship",
                str(ship_dir / "*.log"),
                "--once",
                "--es-url",
                secured.url,
                "--state-dir",
                str(ship_dir.parent / "state"),
            ],
            env=env,
        )
        assert code == 4 and "refused the credentials" in err
        assert "wrong-s3cret" not in err + out
        pw = ship_dir.parent / "pw"
        pw.write_text("right-password\n")
        code, out, err = run_ship(
            [
                "ship",
                str(ship_dir / "*.log"),
                "--once",
                "--es-url",
                secured.url,
                "--username",
                "amebo",
                "--password-file",
                str(pw),
                "--state-dir",
                str(ship_dir.parent / "state"),
            ]
        )
        assert code == 0, err
        assert "right-password" not in err + out
        assert len(secured.docs(TARGET)) == 1


def test_password_on_argv_warns(es, ship_dir):
    write_lines(ship_dir / "a.log", [record(1)])
    code, _, err = run_ship(
        [
            "ship",
            str(ship_dir / "*.log"),
            "--once",
            "--es-url",
            es.url,
            "--username",
            "u",
            "--password",
            "argv-secret",
            "--state-dir",
            str(ship_dir.parent / "state"),
        ]
    )
    assert code == 0 and "visible to every user" in err and "argv-secret" not in err


def test_insecure_warns_loudly(es, ship_dir):
    write_lines(ship_dir / "a.log", [record(1)])
    code, _, err = run_ship(
        [
            "ship",
            str(ship_dir / "*.log"),
            "--once",
            "--es-url",
            es.url,
            "--insecure",
            "--state-dir",
            str(ship_dir.parent / "state"),
        ]
    )
    assert code == 0 and "NOT verified" in err


def test_options_read_environment_variables(es, ship_dir):
    write_lines(ship_dir / "a.log", [record(1)])
    env = {
        "AMEBO_LOGSHIP_ES_URL": es.url,
        "AMEBO_LOGSHIP_INDEX": "from-env",
        "AMEBO_LOGSHIP_STATE_DIR": str(ship_dir.parent / "state"),
        "AMEBO_LOGSHIP_ONCE": "1",
    }
    code, out, err = run_ship(["ship", str(ship_dir / "*.log")], env=env)
    assert code == 0, err
    assert len(es.docs("from-env")) == 1


def test_own_logs_are_ecs_json_on_stderr(es, ship_dir):
    write_lines(ship_dir / "a.log", [record(1)])
    code, out, err = ship_once(es, ship_dir)
    records = [orjson.loads(x) for x in err.splitlines() if x.startswith("{")]
    assert records and all(r["service.name"] == "amebo-logship" for r in records)
    assert any(r["message"] == "shipping_stopped" for r in records)
    assert os.linesep not in out.strip()


def test_data_stream_and_index_together_is_exit_3(es, ship_dir):
    write_lines(ship_dir / "a.log", [record(1)])
    code, _, err = ship_once(es, ship_dir, "--index", "a", "--data-stream", "logs-b-c")
    assert code == 3 and "not both" in err
