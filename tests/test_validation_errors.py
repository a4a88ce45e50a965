"""Validation errors say where and why, never the value: real jsonschema errors rendered as
``path: keyword limit``, and Amebo's strings reduced when they could quote a value."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from jsonschema.validators import validator_for

from amebo_logging.events import validation_error

SCHEMA = {
    "type": "object",
    "properties": {
        "id": {"type": "integer", "minimum": 1},
        "api_key": {"type": "string", "maxLength": 16},
        "email": {"type": "string", "format": "email", "minLength": 3},
        "pin": {"type": "string", "pattern": "^[0-9]{4}$"},
        "role": {"enum": ["admin", "user"]},
        "kind": {"const": "order"},
        "tags": {"type": "array", "maxItems": 2, "items": {"type": "string"}},
        "user": {"type": "object", "additionalProperties": False, "required": ["name", "id"]},
        "either": {"oneOf": [{"type": "integer"}, {"type": "boolean"}]},
    },
    "required": ["id", "kind"],
}


def errors(payload):
    validator = validator_for(SCHEMA)(SCHEMA)
    return sorted(validation_error(e) for e in validator.iter_errors(payload))


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        ({"id": 1, "kind": "order", "api_key": "s3cr3t-0123456789abcdef"}, ["$.api_key: maxLength 16"]),
        ({"id": "hunter2", "kind": "order"}, ["$.id: type integer"]),
        ({"id": 0, "kind": "order"}, ["$.id: minimum 1"]),
        ({"id": 1, "kind": "order", "pin": "12ab"}, ["$.pin: pattern ^[0-9]{4}$"]),
        ({"id": 1, "kind": "order", "role": "root-secret"}, ['$.role: enum ["admin","user"]']),
        ({"id": 1, "kind": "secret-kind"}, ['$.kind: const "order"']),
        ({"id": 1, "kind": "order", "tags": ["a", "b", "c"]}, ["$.tags: maxItems 2"]),
        ({"id": 1, "kind": "order", "tags": ["a", 42]}, ["$.tags[1]: type string"]),
        ({"id": 1, "kind": "order", "user": {"name": "x", "id": 1, "pw": "x"}}, ["$.user: additionalProperties false"]),
        (
            {"id": 1, "kind": "order", "user": {"id": 1}},
            ["$.user: additionalProperties false", "$.user: required name"],
        ),
        ({"kind": "order"}, ["$: required id"]),
        ({"id": 1, "kind": "order", "either": "secret"}, ["$.either: oneOf"]),
        ({"id": 1, "kind": "order", "email": "x"}, ["$.email: minLength 3"]),
    ],
)
def test_each_keyword_says_where_and_why(payload, expected):
    assert errors(payload) == expected


@settings(max_examples=200, deadline=None)
@given(
    secret=st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-_", min_size=8, max_size=40).map(lambda s: "S" + s),
    key=st.sampled_from(["id", "api_key", "email", "pin", "role", "kind", "tags", "user", "either", "other"]),
    nested=st.booleans(),
)
def test_no_rejected_value_appears_in_any_error(secret, key, nested):
    value = {"name": secret, "id": secret, secret: secret} if nested and key == "user" else secret
    if nested and key == "tags":
        value = [secret, secret, secret]
    payload = {"id": 1, "kind": "order", key: value}
    for text in errors(payload):
        assert secret not in text and secret[:8] not in text, text


@pytest.mark.parametrize(
    ("amebo", "kept"),
    [
        ("$.id: 'hunter2' is not of type 'integer'", "$.id: invalid"),
        ("$.n: -5 is less than the minimum of 0", "$.n: invalid"),
        ("$: payload is not valid JSON", "$: payload is not valid JSON"),
        ("$.email: required", "$.email: required"),
        ("something odd: 'quoted'", "$: invalid"),
    ],
)
def test_amebo_strings_keep_a_reason_only_when_it_cannot_hold_a_value(amebo, kept):
    assert validation_error(amebo) == kept
