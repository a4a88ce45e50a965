"""Amebo's event catalog as one-line helpers, so each event always has the same fields.

Each helper takes the logger first and writes one record whose ``message`` is the event
name; the fields are those declared for it in :data:`amebo_logging.schema.EVENTS`::

    from amebo_logging import events, get_logger
    log = get_logger("amebo.gists")
    events.event_published(log, action="user.created", application="accounts",
                           event_id="evt_42", payload={"id": 1})

Amebo's own fields live under ``amebo.*`` (``amebo.action``, ``amebo.event_id``, ...), ECS's
rule for custom fields; a hand-written record uses the same keys:
``log.info("event_published", **{"amebo.action": "user.created", "amebo.payload_size": 12})``.
Extra keyword fields are passed through.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Final
from urllib.parse import urlsplit, urlunsplit

import orjson

__all__ = [
    "event_published",
    "http_request",
    "payload_size",
    "safe_url",
    "schema_validation_failed",
    "validation_error",
    "webhook_delivered",
    "webhook_failed",
]


def safe_url(url: str) -> str:
    """*url* without its userinfo (credentials), query string and fragment."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        if ":" in host:
            host = f"[{host}]"
        netloc = f"{host}:{parts.port}" if parts.port is not None else host
        return urlunsplit((parts.scheme, netloc, parts.path, "", ""))
    except ValueError:
        return "<unparseable url>"


def payload_size(payload: Any) -> int:
    """Bytes of *payload* as JSON (what Amebo stores); ``len()`` for bytes and str."""
    if isinstance(payload, (bytes, bytearray)):
        return len(payload)
    if isinstance(payload, str):
        return len(payload.encode("utf-8"))
    return len(orjson.dumps(payload, default=str))


def event_published(
    log: Any,
    *,
    action: str,
    application: str,
    event_id: str | int,
    payload: Any = None,
    size: int | None = None,
    **fields: Any,
) -> None:
    """``event_published``: an event was accepted.  Give *payload* or its *size* in bytes."""
    measured = size if size is not None else (payload_size(payload) if payload is not None else 0)
    log.info(
        "event_published",
        **{
            "amebo.action": action,
            "amebo.application": application,
            "amebo.event_id": str(event_id),
            "amebo.payload_size": measured,
        },
        **fields,
    )


def _webhook_fields(
    event_id: str | int | None,
    subscription: str | int,
    action: str,
    url: str,
    attempt: int,
    max_retries: int,
    status_code: int | None,
    duration_ns: int | None,
) -> dict[str, Any]:
    fields: dict[str, Any] = {} if event_id is None else {"amebo.event_id": str(event_id)}
    fields |= {
        "amebo.subscription": str(subscription),
        "amebo.action": action,
        "url.full": safe_url(url),
        "amebo.attempt": attempt,
        "amebo.max_retries": max_retries,
    }
    if status_code is not None:
        fields["http.response.status_code"] = status_code
    if duration_ns is not None:
        fields["event.duration"] = int(duration_ns)
    return fields


def webhook_delivered(
    log: Any,
    *,
    subscription: str | int,
    action: str,
    url: str,
    status_code: int,
    duration_ns: int,
    attempt: int = 1,
    max_retries: int = 1,
    event_id: str | int | None = None,
    **fields: Any,
) -> None:
    """``webhook_delivered``: a subscriber accepted a delivery of event *event_id*."""
    log.info(
        "webhook_delivered",
        **_webhook_fields(event_id, subscription, action, url, attempt, max_retries, status_code, duration_ns),
        **fields,
    )


def webhook_failed(
    log: Any,
    *,
    subscription: str | int,
    action: str,
    url: str,
    attempt: int,
    max_retries: int,
    status_code: int | None = None,
    duration_ns: int | None = None,
    error: BaseException | None = None,
    event_id: str | int | None = None,
    final: bool | None = None,
    **fields: Any,
) -> None:
    """``webhook_failed``: a delivery attempt failed; WARNING, or ERROR when it was the last
    (*final*; by default, when *attempt* reached *max_retries*).

    *error* (the exception, if one was raised) gives ``error.type``, ``error.message`` and
    ``error.stack_trace``.
    """
    last = attempt >= max_retries if final is None else final
    emit = log.error if last else log.warning
    if error is not None:
        fields["exc_info"] = error
    emit(
        "webhook_failed",
        **_webhook_fields(event_id, subscription, action, url, attempt, max_retries, status_code, duration_ns),
        **fields,
    )


#: Validation errors kept on a ``schema_validation_failed`` record, and the length of each.
MAX_VALIDATION_ERRORS: Final = 20
MAX_VALIDATION_ERROR_CHARS: Final = 300
_MAX_LIMIT_CHARS: Final = 80
_VALUE_MARKS: Final = frozenset("'\"`0123456789")


def validation_error(error: Any) -> str:
    """One validation error as ``path: keyword limit``: where and why, never the value.

    *error* is a ``jsonschema`` error (``$.api_key: maxLength 16``, ``$.password: type
    integer``, ``$.user: required email``) or a string ``path: reason``, whose reason is kept
    only when it holds no quote and no digit (``$.email: required``), else replaced
    (``$.id: invalid``): a validator's message quotes the value.
    The limit is the schema's (the application's own declaration), cut at 80 characters;
    ``required`` names the missing properties, from the schema too.
    """
    keyword = getattr(error, "validator", None)
    if keyword is None:
        path, sep, why = str(error).partition(": ")
        if not (sep and path.startswith("$")):
            path, why = "$", str(error)
        # a reason that could hold a value (quotes, digits) is not kept
        return f"{path}: {why}" if why and not (set(why) & _VALUE_MARKS) else f"{path}: invalid"
    path = "$" + "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in getattr(error, "absolute_path", ()))
    limit = getattr(error, "validator_value", None)
    instance = getattr(error, "instance", None)
    if keyword == "required" and isinstance(limit, list) and isinstance(instance, dict):
        limit = [name for name in limit if name not in instance] or limit
    shown = _limit_text(keyword, limit)
    return f"{path}: {keyword} {shown}" if shown else f"{path}: {keyword}"


def _limit_text(keyword: str, limit: Any) -> str:
    if keyword in ("additionalProperties", "unevaluatedProperties", "items", "not", "if", "then", "else"):
        return "false" if limit is False else ""  # a subschema: the keyword says enough
    if keyword not in ("const", "enum") and (
        isinstance(limit, (dict, bool)) or (isinstance(limit, list) and any(isinstance(v, dict) for v in limit))
    ):
        return ""  # subschemas (oneOf, anyOf, allOf...): the keyword says enough
    if isinstance(limit, list) and all(isinstance(v, str) for v in limit) and keyword in ("required", "type"):
        text = " ".join(limit)
    elif isinstance(limit, str) and keyword not in ("const", "enum"):
        text = limit  # a pattern, a format, a type: as the schema spells it
    else:
        try:
            text = orjson.dumps(limit).decode()
        except TypeError:
            text = type(limit).__name__
    return text if len(text) <= _MAX_LIMIT_CHARS else text[:_MAX_LIMIT_CHARS] + "..."


def schema_validation_failed(log: Any, *, action: str, application: str, errors: Iterable[Any], **fields: Any) -> None:
    """``schema_validation_failed``: a payload failed its action's schema.

    *errors* are ``jsonschema`` errors or strings, each written as :func:`validation_error`
    renders it (where and why, never the rejected value), at most 20.
    """
    rendered = []
    for err in list(errors)[:MAX_VALIDATION_ERRORS]:
        text = validation_error(err)
        rendered.append(text if len(text) <= MAX_VALIDATION_ERROR_CHARS else text[:MAX_VALIDATION_ERROR_CHARS] + "...")
    log.warning(
        "schema_validation_failed",
        **{"amebo.action": action, "amebo.application": application, "amebo.validation_errors": rendered},
        **fields,
    )


def http_request(
    log: Any,
    *,
    method: str,
    path: str,
    status_code: int,
    duration_ns: int,
    client_ip: str | None = None,
    user_agent: str | None = None,
    quiet: bool = False,
    **fields: Any,
) -> None:
    """``http_request``: one access record (the middleware writes these for you).

    *quiet* logs at DEBUG (probe paths); 5xx responses log at ERROR; others at INFO.
    """
    out: dict[str, Any] = {
        "http.request.method": method.upper(),
        "url.path": path.split("?", 1)[0],
        "http.response.status_code": status_code,
        "event.duration": int(duration_ns),
    }
    if client_ip is not None:
        out["client.ip"] = client_ip
    if user_agent is not None:
        out["user_agent.original"] = user_agent
    emit = log.debug if quiet else (log.error if status_code >= 500 else log.info)
    emit("http_request", **out, **fields)
