"""The record schema: every field the toolkit emits, its Elasticsearch type and meaning.

This module is data.  The index template, the Kibana data view and the tests are derived
from :data:`FIELDS` and :data:`EVENTS`; no other module declares a field.

Field names are ECS dotted names (``http.response.status_code``); records carry them as
flat keys, which Elasticsearch expands into objects on ingest.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final

#: The ECS version our field names follow, written as ``ecs.version`` on every record.
ECS_VERSION: Final = "8.17.0"


@dataclass(frozen=True, slots=True)
class Field:
    """One field of the record schema."""

    name: str
    """The dotted field name, as it appears as a key in a JSON record."""
    type: str
    """The Elasticsearch field type used in the index template."""
    description: str
    """One line saying what the field holds."""
    origin: str = "ecs"
    """``"ecs"`` for Elastic Common Schema fields, ``"apm"`` for Elastic APM's, ``"filebeat"`` for
    Filebeat's, ``"amebo"`` for this toolkit's and Amebo's own."""
    text: bool = False
    """Whether the field has ECS's ``.text`` multi-field (``match_only_text``), for full-text
    search of a keyword or wildcard field."""


@dataclass(frozen=True, slots=True)
class Event:
    """One event of Amebo's catalog: the ``message`` value, the fields it carries, and the
    logger ``amebo_logging.amebo`` writes it with."""

    name: str
    level: str
    description: str
    fields: tuple[str, ...]
    logger: str


_F = Field

#: Every field the toolkit emits.  Keep sorted by group, then by name within the group.
FIELDS: Final[tuple[Field, ...]] = (
    # --- the ECS logging header and always-present fields -----------------------------
    _F("@timestamp", "date_nanos", "When the record was made: RFC 3339, UTC, to the microsecond (all kept)."),
    _F("log.level", "keyword", "Lowercase severity: debug, info, warning, error, critical."),
    _F("message", "match_only_text", "The event name (structlog) or the formatted message (stdlib)."),
    _F("ecs.version", "keyword", "The ECS version these field names follow."),
    _F("log.logger", "keyword", "The name of the logger that made the record."),
    _F("service.name", "keyword", "The service that logged: AMEBO_SERVICE_NAME, default amebo."),
    _F("service.version", "keyword", "The version of the service that logged."),
    _F("service.environment", "keyword", "Where the service runs: production, staging, ..."),
    _F("process.pid", "long", "The id of the process that logged."),
    # --- correlation ---------------------------------------------------------------------
    _F("correlation_id", "keyword", "The request id: inbound X-Request-ID, or a generated uuid4 hex.", "amebo"),
    _F("trace.id", "keyword", "The W3C trace id (32 hex digits) shared by every record of one trace."),
    _F("span.id", "keyword", "This operation's own span id (16 hex digits): one request, one delivery."),
    _F("parent.id", "keyword", "The span id of the caller that sent the traceparent (as in Elastic APM).", "apm"),
    # --- errors --------------------------------------------------------------------------
    _F("error.type", "keyword", "The exception class, qualified by its module unless builtin."),
    _F("error.message", "match_only_text", "The exception's text, or why a line could not be parsed."),
    _F("error.stack_trace", "wildcard", "The full traceback text.", text=True),
    # --- HTTP, URLs and timing -------------------------------------------------------------
    _F("event.duration", "long", "How long the operation took, in nanoseconds."),
    _F("http.request.method", "keyword", "The HTTP method, upper case."),
    _F("http.response.status_code", "long", "The HTTP status code of the response."),
    _F("http.version", "keyword", "The HTTP version of the request, e.g. 1.1."),
    _F("url.path", "wildcard", "The path of the request URL, without the query string."),
    _F("url.full", "wildcard", "A full URL with credentials and query string stripped.", text=True),
    _F("client.ip", "ip", "The IP address of the client that made the request (only ever a valid IP)."),
    _F("client.address", "keyword", "The client's address when it is not an IP: a unix socket, a host name."),
    _F("user_agent.original", "keyword", "The User-Agent header of the request.", text=True),
    # --- Amebo's event catalog -------------------------------------------------------------
    _F("amebo.action", "keyword", "The Amebo action (event type), e.g. user.created.", "amebo"),
    _F("amebo.application", "keyword", "The Amebo application that owns the action.", "amebo"),
    _F("amebo.event_id", "keyword", "The id Amebo gave the published event.", "amebo"),
    _F("amebo.payload_size", "long", "Bytes of the event's JSON payload.", "amebo"),
    _F("amebo.subscription", "keyword", "The subscription a webhook delivery belongs to.", "amebo"),
    _F("amebo.attempt", "long", "Which delivery attempt this was, counting from 1.", "amebo"),
    _F("amebo.max_retries", "long", "How many attempts the deliverer makes at most.", "amebo"),
    _F(
        "amebo.validation_errors",
        "match_only_text",
        "Schema validation errors, one 'path: keyword limit' each, never the value.",
        "amebo",
    ),
    # --- added by the shipper (amebo-logship) ---------------------------------------------
    _F("log.file.path", "keyword", "The file the line was read from."),
    _F("log.offset", "long", "The byte offset of the line in its file (as Filebeat names it).", "filebeat"),
    _F("host.name", "keyword", "The host the shipper ran on."),
    _F(
        "tags", "keyword", "Markers: truncated (a line cut, or left unfinished), interrupted (an attempt Amebo redoes)."
    ),
    # --- container logs (amebo-logship --format docker|cri) -----------------------------------
    _F("container.id", "keyword", "The container whose stdout or stderr the line was."),
    _F("container.name", "keyword", "The container's name (Docker: from its config.v2.json)."),
    _F("container.image.name", "keyword", "The image the container runs (Docker: from its config.v2.json)."),
    _F("stream", "keyword", "stdout or stderr: the container stream the line was written to.", "filebeat"),
    _F("kubernetes.namespace", "keyword", "The pod's namespace (from the log file's name).", "filebeat"),
    _F("kubernetes.pod.name", "keyword", "The pod (from the log file's name).", "filebeat"),
    _F("kubernetes.pod.uid", "keyword", "The pod's uid (from a /var/log/pods path).", "filebeat"),
    _F("kubernetes.container.name", "keyword", "The container within the pod (from the log file's name).", "filebeat"),
)

_BY_NAME: Final[Mapping[str, Field]] = {f.name: f for f in FIELDS}

#: The fields every record carries, whatever its source.
ALWAYS_PRESENT: Final[tuple[str, ...]] = (
    "@timestamp",
    "log.level",
    "message",
    "ecs.version",
    "log.logger",
    "service.name",
    "service.version",
    "service.environment",
    "process.pid",
)

_WEBHOOK = (
    "amebo.event_id",
    "amebo.subscription",
    "amebo.action",
    "url.full",
    "http.response.status_code",
    "event.duration",
    "amebo.attempt",
    "amebo.max_retries",
)
_ERROR = ("error.type", "error.message", "error.stack_trace")

#: Amebo's event catalog: the ``message`` values Amebo emits and the fields of each.
EVENTS: Final[Mapping[str, Event]] = {
    e.name: e
    for e in (
        Event(
            "event_published",
            "info",
            "An event was accepted and stored.",
            ("amebo.action", "amebo.application", "amebo.event_id", "amebo.payload_size"),
            "amebo.events",
        ),
        Event("webhook_delivered", "info", "A subscriber's endpoint accepted a delivery.", _WEBHOOK, "amebo.aproko"),
        Event(
            "webhook_failed",
            "warning",
            "A delivery attempt failed; error at the last attempt.",
            _WEBHOOK + _ERROR,
            "amebo.aproko",
        ),
        Event(
            "schema_validation_failed",
            "warning",
            "A published payload failed its action's schema.",
            ("amebo.action", "amebo.application", "amebo.validation_errors"),
            "amebo.events",
        ),
        Event(
            "http_request",
            "info",
            "One access-log record per HTTP request.",
            (
                "http.request.method",
                "url.path",
                "http.response.status_code",
                "event.duration",
                "http.version",
                "client.ip",
                "client.address",
                "user_agent.original",
            ),
            "amebo.access",
        ),
    )
}


def field(name: str) -> Field:
    """Return the declared field called *name*; raise :class:`KeyError` naming it if undeclared."""
    try:
        return _BY_NAME[name]
    except KeyError:
        raise KeyError(f"{name!r} is not a declared field; declare it in amebo_logging/schema.py") from None


def undeclared(keys: Iterable[str]) -> set[str]:
    """The keys among *keys* that the schema does not declare."""
    return {k for k in keys if k not in _BY_NAME}


def es_properties(fields: Iterable[Field] = FIELDS) -> dict[str, Any]:
    """The Elasticsearch ``mappings.properties`` for *fields*, with dotted names nested as objects."""
    root: dict[str, Any] = {}
    for f in fields:
        node = root
        *parents, leaf = f.name.split(".")
        for part in parents:
            node = node.setdefault(part, {"properties": {}})["properties"]
        spec: dict[str, Any] = {"type": f.type}
        if f.type == "keyword":
            spec["ignore_above"] = 1024
        if f.text:
            spec["fields"] = {"text": {"type": "match_only_text"}}
        node[leaf] = spec
    return root


def markdown_table(fields: Iterable[Field] = FIELDS) -> str:
    """The fields as the Markdown table the README shows (a test keeps the two equal)."""
    rows = ["| field | type | origin | description |", "|---|---|---|---|"]
    rows += [
        f"| `{f.name}` | {f.type}{' (+ `.text`)' if f.text else ''} | {f.origin} | {f.description} |" for f in fields
    ]
    return "\n".join(rows)
