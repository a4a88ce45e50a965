"""Against a real cluster: set ELASTICSEARCH_URL (and ELASTICSEARCH_API_KEY or
ELASTICSEARCH_USERNAME/PASSWORD) to run these; they are skipped otherwise.

They ship into a data stream named for the test run and delete it afterwards.
"""

from __future__ import annotations

import os
import uuid

import pytest

from .shipper_proc import record, run_ship, write_lines

URL = os.environ.get("ELASTICSEARCH_URL")
pytestmark = [pytest.mark.integration, pytest.mark.skipif(not URL, reason="ELASTICSEARCH_URL is not set")]


@pytest.fixture
def client():
    from elasticsearch import Elasticsearch

    kwargs = {}
    if os.environ.get("ELASTICSEARCH_API_KEY"):
        kwargs["api_key"] = os.environ["ELASTICSEARCH_API_KEY"]
    elif os.environ.get("ELASTICSEARCH_USERNAME"):
        kwargs["basic_auth"] = (os.environ["ELASTICSEARCH_USERNAME"], os.environ.get("ELASTICSEARCH_PASSWORD", ""))
    if os.environ.get("ELASTICSEARCH_CA_CERTS"):
        kwargs["ca_certs"] = os.environ["ELASTICSEARCH_CA_CERTS"]
    return Elasticsearch(URL, **kwargs)


def _env():
    env = {"AMEBO_LOGSHIP_ES_URL": URL}
    for ours, theirs in (
        ("API_KEY", "ELASTICSEARCH_API_KEY"),
        ("USERNAME", "ELASTICSEARCH_USERNAME"),
        ("PASSWORD", "ELASTICSEARCH_PASSWORD"),
        ("CA_CERTS", "ELASTICSEARCH_CA_CERTS"),
    ):
        if os.environ.get(theirs):
            env[f"AMEBO_LOGSHIP_{ours}"] = os.environ[theirs]
    return env


def test_ship_once_into_a_real_data_stream_exactly_once(client, ship_dir):
    stream = f"logs-amebotest-{uuid.uuid4().hex[:8]}"
    write_lines(ship_dir / "app.log", [record(i) for i in range(500)] + [b"not json\n"])
    args = [
        "ship",
        str(ship_dir / "*.log"),
        "--once",
        "--data-stream",
        stream,
        "--state-dir",
        str(ship_dir.parent / "state"),
    ]
    try:
        code, out, err = run_ship(args, env=_env())
        assert code == 0, err
        client.indices.refresh(index=stream)
        assert client.count(index=stream)["count"] == 501
        # replay from scratch: every document already exists, none is added
        run_ship(["reset-state", "--yes", "--state-dir", str(ship_dir.parent / "state")])
        code, out, err = run_ship(args, env=_env())
        assert code == 0 and "501 already there" in out, err
        client.indices.refresh(index=stream)
        assert client.count(index=stream)["count"] == 501
    finally:
        client.options(ignore_status=404).indices.delete_data_stream(name=stream)


def test_setup_is_idempotent_on_a_real_cluster(client):
    code, out, err = run_ship(["setup"], env=_env())
    assert code == 0, err
    code, out, err = run_ship(["setup"], env=_env())
    assert code == 0 and all(line.startswith("unchanged") for line in out.splitlines()), out
    template = client.indices.get_index_template(name="amebo-logs")["index_templates"][0]["index_template"]
    assert template["priority"] == 200 and "logs-amebo-*" in template["index_patterns"]


def test_check_passes_on_a_real_cluster():
    code, out, err = run_ship(["check"], env=_env())
    assert code == 0, out + err
