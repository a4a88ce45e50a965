"""Secrets never reach a record: keys at any depth, URL passwords, configurable keys."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from amebo_logging import bind_context, get_logger
from amebo_logging.redaction import DEFAULT_KEYS, REDACTED, Redactor, build_redactor, scrub_url_password

SECRET = "s3cr3t-value"


@pytest.mark.parametrize(
    "key",
    [
        "password",
        "PASSWORD",
        "passwd",
        "secret",
        "client_secret",
        "token",
        "access_token",
        "api_key",
        "apikey",
        "X-Api-Key",
        "Authorization",
        "cookie",
        "Set-Cookie",
        "x-pass-phrase",
        "X-Amebo-Admin-Key",
        "http.request.headers.authorization",
        "db_password",
    ],
)
def test_sensitive_keys_are_redacted_at_any_depth(logfile, key):
    logfile.configure()
    get_logger("x").info("nested", top={key: SECRET}, items=[{"deeper": [{key: SECRET}]}], **{key: SECRET})
    line = logfile.lines()[0]
    assert SECRET.encode() not in line
    record = logfile.one()
    assert record[key] == REDACTED and record["top"][key] == REDACTED
    assert record["items"][0]["deeper"][0][key] == REDACTED


@pytest.mark.parametrize("key", ["token_count", "passage", "secretary_name", "cookies_enabled", "author"])
def test_lookalike_keys_are_kept(logfile, key):
    logfile.configure()
    get_logger("x").info("kept", **{key: "visible"})
    assert logfile.one()[key] == "visible"


def test_url_userinfo_password_is_redacted(logfile):
    logfile.configure()
    get_logger("x").info(
        "connect", dsn="amqp://user:pa55@mq:5672/v", urls=["https://a:b@h/p"], plain="https://example.com/user@host"
    )
    record = logfile.one()
    assert record["dsn"] == "amqp://user:[REDACTED]@mq:5672/v"
    assert record["urls"] == ["https://a:[REDACTED]@h/p"]
    assert record["plain"] == "https://example.com/user@host"


def test_bound_values_are_redacted(logfile):
    logfile.configure()
    bind_context(token=SECRET)
    get_logger("x").bind(api_key=SECRET).info("bound")
    assert SECRET.encode() not in logfile.lines()[0]


def test_callers_objects_are_not_changed(logfile):
    logfile.configure()
    headers = {"Authorization": SECRET, "nested": [{"password": SECRET}]}
    get_logger("x").info("request", headers=headers)
    assert headers == {"Authorization": SECRET, "nested": [{"password": SECRET}]}


def test_keys_can_be_added_and_removed(logfile):
    logfile.configure(redact=["session_id", "-cookie"])
    get_logger("x").info("custom", session_id=SECRET, cookie="visible", password=SECRET)
    record = logfile.one()
    assert record["session_id"] == REDACTED and record["cookie"] == "visible" and record["password"] == REDACTED


def test_environment_variable_changes_keys(logfile, monkeypatch):
    monkeypatch.setenv("AMEBO_LOG_REDACT", "+tenant_key,-token")
    logfile.configure()
    get_logger("x").info("env", tenant_key=SECRET, token="visible")
    record = logfile.one()
    assert record["tenant_key"] == REDACTED and record["token"] == "visible"


def test_redaction_can_be_turned_off(logfile):
    logfile.configure(redact=False)
    get_logger("x").info("off", password="visible")
    assert logfile.one()["password"] == "visible"


def test_a_string_is_not_a_key_list():
    with pytest.raises(TypeError, match="list of key names"):
        build_redactor("password")


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(st.sampled_from(["a", "b", "password", "Token", "nested"]), children, max_size=4)
    ),
    max_leaves=30,
)


@given(json_values)
def test_no_value_under_a_sensitive_key_survives(value):
    red = Redactor(DEFAULT_KEYS)
    out = red.scrub({"payload": value})

    def check(node):
        if isinstance(node, dict):
            for k, v in node.items():
                if k.lower() in ("password", "token"):
                    assert v == REDACTED
                else:
                    check(v)
        elif isinstance(node, list):
            for item in node:
                check(item)

    check(out)


def test_scrub_url_password_leaves_other_text():
    assert scrub_url_password("no url here") == "no url here"
    assert (
        scrub_url_password("see https://u:p@h and ftp://x:y@z/")
        == "see https://u:[REDACTED]@h and ftp://x:[REDACTED]@z/"
    )
