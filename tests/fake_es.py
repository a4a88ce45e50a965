"""An Elasticsearch-compatible HTTP server for tests, on 127.0.0.1, in this process.

It answers the part of Elasticsearch's REST API the toolkit uses, the way Elasticsearch
documents it, so the real ``elasticsearch`` client talks to it unchanged:

* every response carries ``X-Elastic-Product: Elasticsearch``; compatible-with media types
  are answered in kind; errors have Elasticsearch's ``{"error": {...}, "status": N}`` shape;
* ``GET /`` cluster info; basic and ApiKey authentication (401 with ``WWW-Authenticate``);
* ``_bulk`` (``/_bulk`` and ``/{target}/_bulk``) with ``create``, ``index`` and ``delete``:
  per-item results, ``create`` conflicts (409 ``version_conflict_engine_exception``), data
  streams (create-only, ``@timestamp`` required), dynamic and template mappings with
  mapping conflicts (400 ``document_parsing_exception``), ``filter_path``;
* gzip request bodies (``Content-Encoding: gzip``) and gzip responses on ``Accept-Encoding``;
* index, component and ILM templates: PUT, GET, HEAD, DELETE; data streams and rollover;
  ``_count`` and a minimal ``_search`` (``match_all``, ``bool`` filters, ``exists`` including
  ``_ignored``, ``range`` with ``now-1d`` date math); ``_security/_authenticate`` and
  ``_has_privileges``;
* the stack's built-in ``logs`` index template and its ``logs@settings``, ``logs@mappings``
  and ``ecs@mappings`` component templates: ``logs@settings`` sets
  ``index.mapping.ignore_malformed``, so a value a numeric, date, ip or boolean field cannot
  take is kept in ``_source``, not indexed, and its field listed in ``_ignored`` (never for
  ``@timestamp``); from 9.2 it also enables the failure store;
* the failure store (8.19 and 9.1+): ``data_stream_options`` in templates, applied when a data
  stream is created; ``_data_stream/{name}/_options``; a document that fails the mapping of a
  data stream whose failure store is on is written to its ``.fs-`` index and answered 201
  with ``"failure_store": "used"`` (not when the failure store is off: the error then carries
  ``"failure_store": "not_enabled"``); ``{stream}::failures`` and ``::data`` selectors.
  ``version`` picks the behaviour (``9.1.0`` by default; ``8.18.0`` and ``9.0.0`` refuse
  ``data_stream_options``).

Faults are injected from the test: :meth:`FakeElasticsearch.fail_requests` (whole-request
429/5xx), :meth:`fail_items` (per-item 429/5xx), :meth:`stop`/:meth:`start` (connection
refused), ``delay`` (slow responses), ``max_content_length`` (413 for larger bodies, as
Elasticsearch's ``http.max_content_length`` or a proxy's body limit answers: no product
header, an empty body or a proxy's HTML page), ``item_forbidden`` (per-item 403
``security_exception``, which is how Elasticsearch refuses a bulk write to an index the
credentials may not write), ``forbidden`` (whole-request 403) and changing ``api_key`` or
the credentials mid-run (401).
"""

from __future__ import annotations

import base64
import fnmatch
import gzip
import ipaddress
import re
import socket
import ssl
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import orjson

VERSION = "9.1.0"
#: Mapping types that honour ignore_malformed (Elasticsearch's ignore_malformed page).
_IGNORE_MALFORMED = frozenset(
    {"long", "integer", "short", "byte", "double", "float", "half_float", "scaled_float", "unsigned_long"}
    | {"date", "date_nanos", "ip", "boolean"}
)


def version_tuple(version: str) -> tuple[int, int]:
    major, minor = version.split(".")[:2]
    return int(major), int(minor)


def has_failure_store(version: str) -> bool:
    """Whether this version has the failure store (GA in 8.19 and 9.1; 9.0 does not)."""
    v = version_tuple(version)
    return (8, 19) <= v < (9, 0) or v >= (9, 1)


_COMPAT = re.compile(r"application/vnd\.elasticsearch\+(json|x-ndjson);\s*compatible-with=(\d+)")


class EsError(Exception):
    """An Elasticsearch error response."""

    def __init__(self, status: int, type_: str, reason: str, **extra: Any) -> None:
        super().__init__(reason)
        self.status, self.type, self.reason, self.extra = status, type_, reason, extra

    def body(self) -> dict[str, Any]:
        cause = {"type": self.type, "reason": self.reason, **self.extra}
        return {"error": {"root_cause": [cause], **cause}, "status": self.status}

    def item_error(self) -> dict[str, Any]:
        return {"type": self.type, "reason": self.reason, **self.extra}


# --- mappings -----------------------------------------------------------------------------

_DATE = re.compile(r"\d{4}-\d\d-\d\d([T ]\d\d:\d\d(:\d\d(\.\d{1,9})?)?)?(Z|[+-]\d\d:?\d\d)?")


def _leaf_ok(es_type: str, value: Any) -> bool:
    if value is None:
        return True
    if isinstance(value, list):
        return all(_leaf_ok(es_type, v) for v in value)
    if isinstance(value, dict):
        return es_type in ("object", "flattened")
    if es_type in ("long", "integer", "short", "byte"):
        if isinstance(value, bool):
            return False
        if isinstance(value, int):
            return -(2**63) <= value < 2**63
        if isinstance(value, float):
            return value.is_integer()
        if isinstance(value, str):  # coerce: "12" is accepted, as Elasticsearch does by default
            try:
                int(value.strip())
                return True
            except ValueError:
                return False
        return False
    if es_type in ("double", "float"):
        return (isinstance(value, (int, float)) and not isinstance(value, bool)) or _is_float_str(value)
    if es_type in ("date", "date_nanos"):
        return (isinstance(value, int) and not isinstance(value, bool)) or (
            isinstance(value, str) and _DATE.fullmatch(value) is not None
        )
    if es_type == "ip":
        try:
            ipaddress.ip_address(value)
            return True
        except ValueError:
            return False
    if es_type == "boolean":
        return isinstance(value, bool) or value in ("true", "false", "")
    return not isinstance(value, dict)  # keyword, text, match_only_text, wildcard


def _is_float_str(value: Any) -> bool:
    try:
        float(value)
        return isinstance(value, str)
    except (TypeError, ValueError):
        return False


def _dynamic_type(value: Any) -> str | None:
    if isinstance(value, list):
        for v in value:
            t = _dynamic_type(v)
            if t is not None:
                return t
        return None
    if value is None:
        return None
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "long"
    if isinstance(value, float):
        return "float"
    if isinstance(value, dict):
        return "object"
    if isinstance(value, str) and _DATE.fullmatch(value):
        return "date"
    return "keyword"


def flatten_properties(props: dict[str, Any], prefix: str = "") -> dict[str, str]:
    out: dict[str, str] = {}
    for name, spec in props.items():
        path = prefix + name
        if "properties" in spec:
            out[path] = "object"
            out.update(flatten_properties(spec["properties"], path + "."))
        else:
            out[path] = spec.get("type", "object")
    return out


@dataclass
class Index:
    name: str
    mappings: dict[str, str] = field(default_factory=dict)  # dotted path -> type
    docs: dict[str, dict[str, Any]] = field(default_factory=dict)
    data_stream: str | None = None
    ignore_malformed: bool = False  # index.mapping.ignore_malformed
    ignored: dict[str, list[str]] = field(default_factory=dict)  # doc id -> its _ignored fields
    created: dict[str, float] = field(default_factory=dict)  # doc id -> when it was indexed

    def check_and_map(self, doc: dict[str, Any], doc_id: str) -> list[str]:
        """Map *doc*'s fields like dynamic mapping does; raise EsError on a conflict.  Returns
        the fields ignore_malformed left unindexed (the document's ``_ignored``)."""
        new: dict[str, str] = {}
        ignored: list[str] = []
        self._walk(doc, "", doc_id, new, ignored)
        self.mappings.update(new)
        return ignored

    def _walk(self, node: dict[str, Any], prefix: str, doc_id: str, new: dict[str, str], ignored: list[str]) -> None:
        for key, value in node.items():
            if key == "":
                raise EsError(400, "document_parsing_exception", "field name cannot be an empty string")
            # dotted keys and object notation are the same path, as in Elasticsearch
            path = prefix + key
            parts = path.split(".")
            for i in range(1, len(parts)):
                parent = ".".join(parts[:i])
                ptype = self.mappings.get(parent) or new.get(parent)
                if ptype is not None and ptype != "object":
                    raise EsError(
                        400,
                        "document_parsing_exception",
                        f"[1:2] failed to parse field [{parent}] of type [{ptype}] in document with id "
                        f"'{doc_id}'. Preview of field's value: '{path}'",
                        caused_by={
                            "type": "illegal_argument_exception",
                            "reason": f"cannot add subfield to [{parent}]",
                        },
                    )
                if ptype is None:
                    new[parent] = "object"
            mapped = self.mappings.get(path) or new.get(path)
            items = value if isinstance(value, list) else [value]
            if any(isinstance(v, dict) for v in items):
                if mapped is not None and mapped not in ("object", "flattened"):
                    raise EsError(
                        400,
                        "document_parsing_exception",
                        f"[1:2] failed to parse field [{path}] of type [{mapped}] in document with id "
                        f"'{doc_id}'. Preview of field's value: '{orjson.dumps(value).decode()[:50]}'",
                    )
                new.setdefault(path, "object")
                if mapped != "flattened":
                    for v in items:
                        if isinstance(v, dict):
                            self._walk(v, path + ".", doc_id, new, ignored)
                continue
            if mapped == "object":
                raise EsError(
                    400,
                    "document_parsing_exception",
                    f"[1:2] object mapping for [{path}] tried to parse field [{path}] as object, "
                    "but found a concrete value",
                )
            if mapped is None:
                dyn = _dynamic_type(value)
                if dyn is not None:
                    new[path] = dyn
                continue
            if not _leaf_ok(mapped, value):
                if self.ignore_malformed and mapped in _IGNORE_MALFORMED and path != "@timestamp":
                    ignored.append(path)  # kept in _source, not indexed
                    continue
                preview = value if isinstance(value, str) else orjson.dumps(value).decode()
                raise EsError(
                    400,
                    "document_parsing_exception",
                    f"[1:2] failed to parse field [{path}] of type [{mapped}] in document with id "
                    f"'{doc_id}'. Preview of field's value: '{preview[:50]}'",
                    caused_by={"type": "illegal_argument_exception", "reason": f'For input string: "{preview[:50]}"'},
                )


# --- filter_path --------------------------------------------------------------------------


def _filter(node: Any, paths: list[list[str]]) -> Any:
    if not paths:
        return node
    if any(not p for p in paths):
        return node
    if isinstance(node, list):
        kept = [_filter(item, paths) for item in node]
        return [k for k in kept if k is not _MISSING]
    if not isinstance(node, dict):
        return _MISSING
    out = {}
    for key, value in node.items():
        sub = [p[1:] for p in paths if p[0] == "**" or fnmatch.fnmatchcase(key, p[0])]
        sub += [p for p in paths if p[0] == "**"]
        if not sub:
            continue
        kept = _filter(value, sub)
        if kept is not _MISSING and kept != {}:
            out[key] = kept
    return out if out else _MISSING


_MISSING: Any = object()


def apply_filter_path(body: Any, filter_path: str | None) -> Any:
    if not filter_path:
        return body
    kept = _filter(body, [p.split(".") for p in filter_path.split(",") if p])
    return {} if kept is _MISSING else kept


# --- the store ----------------------------------------------------------------------------


@dataclass
class Faults:
    request_failures: list[int] = field(default_factory=list)  # statuses for the next requests
    item_failure: Callable[[str, dict[str, Any]], int | None] | None = None
    delay: float = 0.0


class Store:
    """Indices, data streams and templates, guarded by one lock."""

    def __init__(self, builtin_logs_template: bool = True, version: str = VERSION) -> None:
        self.lock = threading.RLock()
        self.version = version
        self.indices: dict[str, Index] = {}
        self.data_streams: dict[str, list[str]] = {}
        self.failure_indices: dict[str, list[str]] = {}  # data stream -> its .fs- indices
        self.failure_store: dict[str, bool] = {}  # data stream -> failure store enabled
        self.index_templates: dict[str, dict[str, Any]] = {}
        self.component_templates: dict[str, dict[str, Any]] = {}
        self.ilm_policies: dict[str, dict[str, Any]] = {}
        self.generation: dict[str, int] = {}
        if builtin_logs_template:  # the stack's built-in "logs" template (priority 100) and its parts
            settings: dict[str, Any] = {
                "template": {
                    "settings": {"index": {"lifecycle": {"name": "logs"}, "mapping": {"ignore_malformed": True}}}
                },
                "_meta": {"managed": True},
            }
            if version_tuple(version) >= (9, 2):  # the failure store is on for new logs-*-* data streams
                settings["template"]["data_stream_options"] = {"failure_store": {"enabled": True}}
            self.component_templates["logs@settings"] = settings
            self.component_templates["logs@mappings"] = {
                "template": {
                    "mappings": {
                        "properties": {
                            "@timestamp": {"type": "date"},
                            "data_stream": {
                                "properties": {
                                    "type": {"type": "constant_keyword"},
                                    "dataset": {"type": "constant_keyword"},
                                    "namespace": {"type": "constant_keyword"},
                                }
                            },
                        }
                    }
                },
                "_meta": {"managed": True},
            }
            self.component_templates["ecs@mappings"] = {"template": {"mappings": {}}, "_meta": {"managed": True}}
            self.index_templates["logs"] = {
                "index_patterns": ["logs-*-*"],
                "priority": 100,
                "data_stream": {},
                "composed_of": ["logs@mappings", "logs@settings", "ecs@mappings"],
                "ignore_missing_component_templates": ["logs@custom"],
                "_meta": {"managed": True},
            }

    def _matching_template(self, name: str) -> dict[str, Any] | None:
        best = None
        for tname, tpl in self.index_templates.items():
            if any(fnmatch.fnmatchcase(name, p) for p in tpl.get("index_patterns", [])) and (
                best is None or tpl.get("priority", 0) > best[1].get("priority", 0)
            ):
                best = (tname, tpl)
        return best[1] if best else None

    def _parts(self, tpl: dict[str, Any]) -> list[dict[str, Any]]:
        """The ``template`` sections *tpl* composes, in order: components, then its own."""
        found = [self.component_templates.get(c) for c in tpl.get("composed_of", [])]
        return [*[c.get("template", {}) for c in found if c is not None], tpl.get("template", {})]

    def _template_mappings(self, tpl: dict[str, Any]) -> dict[str, str]:
        mappings: dict[str, str] = {}
        for part in self._parts(tpl):
            mappings.update(flatten_properties(part.get("mappings", {}).get("properties", {})))
        return mappings

    def _ignore_malformed(self, tpl: dict[str, Any] | None) -> bool:
        found = False
        for part in self._parts(tpl) if tpl else []:
            settings = part.get("settings", {})
            value = settings.get("index", {}).get("mapping", {}).get("ignore_malformed")
            value = settings.get("index.mapping.ignore_malformed", value)
            if value is not None:
                found = value in (True, "true")
        return found

    def _failure_store_option(self, tpl: dict[str, Any]) -> bool:
        """The failure store setting a new data stream takes from *tpl* (the last part that says)."""
        enabled = False
        for part in self._parts(tpl):
            option = (part.get("data_stream_options") or {}).get("failure_store") or {}
            if "enabled" in option:
                enabled = bool(option["enabled"])
        return enabled and has_failure_store(self.version)

    def write_index(self, target: str, op: str) -> Index:
        """The index a write to *target* lands in, creating it (or a data stream) as ES does."""
        if target in self.data_streams:
            if op != "create":
                raise EsError(
                    400,
                    "illegal_argument_exception",
                    "only write ops with an op_type of create are allowed in data streams",
                )
            return self.indices[self.data_streams[target][-1]]
        if target in self.indices:
            return self.indices[target]
        if target != target.lower() or target.startswith(("_", "-", "+")):
            raise EsError(
                400, "invalid_index_name_exception", f"Invalid index name [{target}], must be lowercase", index=target
            )
        tpl = self._matching_template(target)
        mappings = self._template_mappings(tpl) if tpl else {}
        if tpl is not None and "data_stream" in tpl:
            if op != "create":
                raise EsError(
                    400,
                    "illegal_argument_exception",
                    "only write ops with an op_type of create are allowed in data streams",
                )
            self.data_streams[target] = []
            self.failure_indices[target] = []
            self.failure_store[target] = self._failure_store_option(tpl)
            return self._roll(target, mappings)
        index = Index(target, dict(mappings), ignore_malformed=self._ignore_malformed(tpl))
        self.indices[target] = index
        return index

    def _roll(self, stream: str, mappings: dict[str, str] | None = None) -> Index:
        gen = self.generation.get(stream, 0) + 1
        self.generation[stream] = gen
        day = datetime.now(UTC).strftime("%Y.%m.%d")
        name = f".ds-{stream}-{day}-{gen:06d}"
        tpl = self._matching_template(stream)
        if mappings is None:
            mappings = self._template_mappings(tpl) if tpl else {}
        index = Index(name, dict(mappings), data_stream=stream, ignore_malformed=self._ignore_malformed(tpl))
        self.indices[name] = index
        self.data_streams[stream].append(name)
        return index

    def failure_index(self, stream: str) -> Index:
        """The failure store's write index of *stream*, created on first use."""
        names = self.failure_indices[stream]
        if not names:
            day = datetime.now(UTC).strftime("%Y.%m.%d")
            gen = self.generation.get(stream, 1) + 1
            self.generation[stream] = gen
            name = f".fs-{stream}-{day}-{gen:06d}"
            self.indices[name] = Index(name, {"@timestamp": "date"}, data_stream=stream)
            names.append(name)
        return self.indices[names[-1]]

    def rollover(self, stream: str) -> tuple[str, str]:
        with self.lock:
            if stream not in self.data_streams:
                raise EsError(404, "index_not_found_exception", f"no such index [{stream}]", index=stream)
            old = self.data_streams[stream][-1]
            return old, self._roll(stream).name

    def resolve(self, target: str) -> list[Index]:
        """The indices *target* names: indices, data streams (their backing indices, or with
        ``::failures`` their failure indices), wildcards."""
        names: list[str] = []
        for part in target.split(","):
            part, _, selector = part.partition("::")
            if selector not in ("", "data", "failures"):
                raise EsError(
                    400,
                    "illegal_argument_exception",
                    f"invalid usage of :: separator, [{selector}] is not a recognized selector",
                )
            streams = self.failure_indices if selector == "failures" else self.data_streams
            if part in self.data_streams:
                names.extend(streams[part])
            elif any(ch in part for ch in "*?"):
                if selector != "failures":
                    names.extend(
                        n for n, i in self.indices.items() if fnmatch.fnmatchcase(n, part) and not n.startswith(".fs-")
                    )
                for ds, backing in streams.items():
                    if fnmatch.fnmatchcase(ds, part):
                        names.extend(backing)
            elif part in self.indices:
                names.append(part)
            else:
                raise EsError(404, "index_not_found_exception", f"no such index [{part}]", index=part)
        return [self.indices[n] for n in dict.fromkeys(names)]

    def all_docs(self, target: str) -> list[dict[str, Any]]:
        with self.lock:
            try:
                return [doc for index in self.resolve(target) for doc in index.docs.values()]
            except EsError:
                return []


class FakeElasticsearch:
    """The server: ``with FakeElasticsearch() as es: es.url``.  ``FakeElasticsearch(node_of=es)``
    is another node of *es*'s cluster: its own address, faults and counters, the same data."""

    def __init__(
        self,
        *,
        username: str | None = None,
        password: str | None = None,
        api_key: str | None = None,
        privileges: bool = True,
        builtin_logs_template: bool = True,
        version: str = VERSION,
        node_of: FakeElasticsearch | None = None,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        self.version = version
        self.tls = tls  # serve HTTPS with this (server-side) context
        self.store = node_of.store if node_of is not None else Store(builtin_logs_template, version)
        self.faults = Faults()
        self.credentials = (username, password) if username else None
        self.api_key = api_key
        self.privileges = privileges
        self.requests: list[tuple[str, str]] = []
        self.forbidden: dict[str, int] = {}  # path prefix -> status for writes (privileges)
        self.item_forbidden: dict[str, str] = {}  # target glob -> the API key id refused on it, per item
        self.max_content_length: int | None = None
        self.too_large_style = "elasticsearch"  # or "proxy": nginx's HTML page
        self.bulk_requests = 0
        self.gzip_requests = 0
        # Indexing pressure, as a cluster under load shows it: each _bulk answered this many
        # seconds late (a number, or a function giving one per request: completions then come
        # back out of order), and a _bulk arriving while max_concurrent_bulk are being handled
        # refused with 429 es_rejected_execution_exception, as Elasticsearch's coordinating
        # limit refuses it.
        self.bulk_delay: float | Callable[[], float] = 0.0
        self.max_concurrent_bulk: int | None = None
        self.bulk_active = 0
        self.max_bulk_active = 0
        self.rejected_bulk = 0
        self._pressure = threading.Lock()
        self._sock: socket.socket | None = None
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.port = 0

    # --- lifecycle ---------------------------------------------------------------------
    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}"

    def start(self) -> FakeElasticsearch:
        """Start serving (again, on the same port after :meth:`stop`)."""
        handler = type("Handler", (_Handler,), {"es": self})
        server = _Server(("127.0.0.1", self.port), handler)
        if self.tls is not None:  # (the handshake happens as a connection is accepted)
            server.socket = self.tls.wrap_socket(server.socket, server_side=True)
        self.port = server.server_address[1]
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()
        return self

    @property
    def running(self) -> bool:
        """Whether it is serving (between :meth:`start` and :meth:`stop`)."""
        return self._server is not None

    def stop(self) -> None:
        """Stop serving: new connections are refused, open ones are closed."""
        if self._server is not None:
            self._server.shutdown()
            self._server.close_all()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> FakeElasticsearch:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    @contextmanager
    def down(self) -> Iterator[None]:
        self.stop()
        try:
            yield
        finally:
            self.start()

    # --- faults --------------------------------------------------------------------------
    def admit_bulk(self) -> bool:
        """Whether a _bulk arriving now is taken (False: refused, over max_concurrent_bulk)."""
        with self._pressure:
            if self.max_concurrent_bulk is not None and self.bulk_active >= self.max_concurrent_bulk:
                self.rejected_bulk += 1
                return False
            self.bulk_active += 1
            self.max_bulk_active = max(self.max_bulk_active, self.bulk_active)
            return True

    def bulk_answered_late(self) -> None:
        delay = self.bulk_delay() if callable(self.bulk_delay) else self.bulk_delay
        if delay > 0:
            time.sleep(delay)

    def bulk_done(self) -> None:
        with self._pressure:
            self.bulk_active -= 1

    def fail_requests(self, *statuses: int) -> None:
        """Answer the next ``_bulk`` requests with these statuses, one each, in order."""
        with self.store.lock:
            self.faults.request_failures.extend(statuses)

    def fail_items(self, rule: Callable[[str, dict[str, Any]], int | None] | None) -> None:
        """*rule(id, doc)* returns a status (429, 503...) to fail that item with, or None."""
        self.faults.item_failure = rule

    # --- inspection ------------------------------------------------------------------------
    def docs(self, target: str = "*") -> list[dict[str, Any]]:
        return self.store.all_docs(target)

    def ids(self, target: str = "*") -> list[str]:
        with self.store.lock:
            try:
                return [i for index in self.store.resolve(target) for i in index.docs]
            except EsError:
                return []


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    # the listen backlog Elasticsearch's Netty has (the system's somaxconn): a shipper opening
    # its connections at once is not made to wait out dropped SYNs the real server would take
    request_queue_size = socket.SOMAXCONN

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.open_connections: set[socket.socket] = set()
        self.conn_lock = threading.Lock()
        super().__init__(*args, **kwargs)

    def process_request(self, request: Any, client_address: Any) -> None:
        with self.conn_lock:
            self.open_connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self.conn_lock:
            self.open_connections.discard(request)
        super().shutdown_request(request)

    def close_all(self) -> None:
        with self.conn_lock:
            conns = list(self.open_connections)
        for conn in conns:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


class _Handler(BaseHTTPRequestHandler):
    es: FakeElasticsearch
    protocol_version = "HTTP/1.1"
    # (TCP_NODELAY, as Elasticsearch sets on its HTTP sockets: else the headers and the body,
    # written apart, wait out the client's delayed ACK, 40 ms on Linux, on every answer after
    # the first on a connection)
    disable_nagle_algorithm = True

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib's name
        pass

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_PUT(self) -> None:
        self._dispatch("PUT")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")

    def do_HEAD(self) -> None:
        self._dispatch("HEAD")

    # --- plumbing --------------------------------------------------------------------------
    def _too_large(self, decompressed: int | None = None) -> bool:
        """Answer 413 when the body is over the limit, as Elasticsearch's HTTP layer (or a proxy)
        does: before any handler, without the product header.  A proxy limits the bytes sent;
        Elasticsearch the request as its aggregator sees it, after its decompressor (a gzipped
        body is refused by its size uncompressed, *decompressed*, once it is read)."""
        limit = self.es.max_content_length
        if limit is None:
            return False
        if decompressed is not None:
            if self.es.too_large_style == "proxy" or decompressed <= limit:
                return False
        else:
            length = int(self.headers.get("Content-Length") or 0)
            if length <= limit:
                return False
            self.rfile.read(length)
        if self.es.too_large_style == "proxy":
            body = (
                b"<html>\r\n<head><title>413 Request Entity Too Large</title></head>\r\n<body>\r\n<center><h1>"
                b"413 Request Entity Too Large</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n"
            )
            ctype = "text/html"
        else:
            body, ctype = b"", "text/plain"
        self.send_response(413)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
        return True

    def _body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        data = self.rfile.read(length) if length else b""
        if self.headers.get("Content-Encoding", "").lower() == "gzip":
            self.es.gzip_requests += 1
            data = gzip.decompress(data)
        return data

    def _send(self, status: int, body: Any, extra_headers: dict[str, str] | None = None) -> None:
        accept = self.headers.get("Accept", "")
        m = _COMPAT.search(accept)
        ctype = f"application/vnd.elasticsearch+json;compatible-with={m.group(2)}" if m else "application/json"
        payload = b"" if body is None else orjson.dumps(body)
        headers = {"X-Elastic-Product": "Elasticsearch", "Content-Type": ctype}
        if "gzip" in self.headers.get("Accept-Encoding", "") and payload:
            payload = gzip.compress(payload, compresslevel=1)
            headers["Content-Encoding"] = "gzip"
        headers.update(extra_headers or {})
        self.send_response(status)
        for k, v in headers.items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(payload)

    def _authorized(self) -> bool:
        es = self.es
        if es.credentials is None and es.api_key is None:
            return True
        auth = self.headers.get("Authorization", "")
        if auth.startswith("Basic ") and es.credentials is not None:
            try:
                user, _, pw = base64.b64decode(auth[6:]).decode().partition(":")
            except ValueError:
                return False
            return (user, pw) == es.credentials
        if auth.startswith("ApiKey ") and es.api_key is not None:
            return auth[7:] == es.api_key
        return False

    def _dispatch(self, method: str) -> None:
        parts = urlsplit(self.path)
        path = unquote(parts.path)
        query = {k: v[-1] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
        if self._too_large():
            return
        try:
            body = self._body()
        except (OSError, EOFError, gzip.BadGzipFile) as exc:
            self._send(400, EsError(400, "parse_exception", f"request body: {exc}").body())
            return
        if self._too_large(len(body)):
            return
        self.es.requests.append((method, path))
        if not self._authorized():
            err = EsError(
                401,
                "security_exception",
                "unable to authenticate user [x] for REST request [" + path + "]",
                header={"WWW-Authenticate": ['Basic realm="security" charset="UTF-8"', "ApiKey"]},
            )
            self._send(401, err.body(), {"WWW-Authenticate": 'Basic realm="security" charset="UTF-8"'})
            return
        for prefix, status in self.es.forbidden.items():
            if path.startswith(prefix) and method in ("PUT", "POST", "DELETE"):
                err = EsError(
                    status, "security_exception", f"action [{method} {path}] is unauthorized for user [amebo_writer]"
                )
                self._send(status, err.body())
                return
        if self.es.faults.delay:
            time.sleep(self.es.faults.delay)
        is_bulk = path.rstrip("/").endswith("/_bulk") and method in ("POST", "PUT")
        if is_bulk and not self.es.admit_bulk():
            self._send(429, EsError(429, "es_rejected_execution_exception", REJECTED_COORDINATING).body())
            return
        try:
            try:
                status, out = _route(self.es, method, path, query, body)
            except EsError as err:
                status, out = err.status, err.body()
            if is_bulk:
                self.es.bulk_answered_late()
        finally:
            if is_bulk:
                self.es.bulk_done()
        if out is not None and status < 300:
            out = apply_filter_path(out, query.get("filter_path"))
        self._send(status, None if method == "HEAD" else out)


# --- the REST API ---------------------------------------------------------------------------


def _route(es: FakeElasticsearch, method: str, path: str, query: dict[str, str], body: bytes) -> tuple[int, Any]:
    segs = [s for s in path.split("/") if s]
    store = es.store
    if not segs:
        return 200, {
            "name": "fake-node",
            "cluster_name": "amebo-test",
            "cluster_uuid": "fake-cluster-uuid",
            "version": {
                "number": es.version,
                "build_flavor": "default",
                "lucene_version": "10.2.1",
                "minimum_wire_compatibility_version": "8.19.0",
                "minimum_index_compatibility_version": "8.0.0",
            },
            "tagline": "You Know, for Search",
        }
    if segs[-1] == "_bulk" and method in ("POST", "PUT"):
        return _bulk(es, segs[0] if len(segs) == 2 else None, body, query)
    if segs[0] in ("_index_template", "_component_template") and len(segs) == 2 and method == "PUT":
        _check_template(es, body)
    if segs[0] == "_index_template" and len(segs) == 2:
        return _crud(store.index_templates, "index_template", "index_templates", segs[1], method, body)
    if segs[0] == "_component_template" and len(segs) == 2:
        return _crud(store.component_templates, "component_template", "component_templates", segs[1], method, body)
    if segs[0] == "_data_stream" and len(segs) == 3 and segs[2] == "_options" and has_failure_store(es.version):
        return _data_stream_options(store, segs[1], method, body)
    if segs[:2] == ["_ilm", "policy"] and len(segs) == 3:
        return _ilm(store, segs[2], method, body)
    if segs[0] == "_data_stream" and len(segs) == 2 and method == "GET":
        with store.lock:
            found = [
                {
                    "name": n,
                    "indices": [{"index_name": i} for i in b],
                    "generation": store.generation.get(n, len(b)),
                    "timestamp_field": {"name": "@timestamp"},
                    **(
                        {
                            "failure_store": {
                                "enabled": store.failure_store[n],
                                "indices": [{"index_name": i} for i in store.failure_indices[n]],
                            }
                        }
                        if has_failure_store(es.version)
                        else {}
                    ),
                }
                for n, b in store.data_streams.items()
                if fnmatch.fnmatchcase(n, segs[1])
            ]
        if not found and not any(c in segs[1] for c in "*?"):
            raise EsError(404, "index_not_found_exception", f"no such index [{segs[1]}]", index=segs[1])
        return 200, {"data_streams": found}
    if len(segs) == 2 and segs[1] == "_rollover" and method == "POST":
        old, new = store.rollover(segs[0])
        return 200, {"acknowledged": True, "old_index": old, "new_index": new, "rolled_over": True}
    if len(segs) == 2 and segs[1] in ("_count", "_search") and method in ("GET", "POST"):
        wanted = (orjson.loads(body) if body else {}).get("query", {"match_all": {}})
        with store.lock:
            docs = [
                (index.name, doc_id, doc, index.ignored.get(doc_id))
                for index in store.resolve(segs[0])
                for doc_id, doc in index.docs.items()
                if _matches(wanted, doc, index.ignored.get(doc_id), index.created.get(doc_id))
            ]
        if segs[1] == "_count":
            return 200, {"count": len(docs), "_shards": {"total": 1, "successful": 1, "skipped": 0, "failed": 0}}
        size = int(query.get("size", 10))
        hits = [
            {"_index": name, "_id": doc_id, "_source": d, **({"_ignored": ignored} if ignored else {})}
            for name, doc_id, d, ignored in docs[:size]
        ]
        return 200, {
            "took": 1,
            "timed_out": False,
            "hits": {"total": {"value": len(docs), "relation": "eq"}, "hits": hits},
        }
    if len(segs) == 2 and segs[1] == "_refresh":
        return 200, {"_shards": {"total": 1, "successful": 1, "failed": 0}}
    if segs[:2] == ["_security", "_authenticate"]:
        return 200, {"username": es.credentials[0] if es.credentials else "api_key", "roles": ["amebo_writer"]}
    if segs[:2] == ["_security", "user"] and segs[-1] == "_has_privileges":
        wanted = orjson.loads(body or b"{}")
        index_privs = []
        for entry in wanted.get("index", []):
            for name in entry.get("names", []):
                index_privs.append({name: dict.fromkeys(entry.get("privileges", []), es.privileges)})
        merged: dict[str, Any] = {}
        for entry in index_privs:
            merged.update(entry)
        return 200, {
            "username": "x",
            "has_all_requested": es.privileges,
            "cluster": {},
            "index": merged,
            "application": {},
        }
    if method == "HEAD" and len(segs) == 1:
        with store.lock:
            exists = segs[0] in store.indices or segs[0] in store.data_streams
        return (200 if exists else 404), None
    raise EsError(400, "illegal_argument_exception", f"no handler found for uri [{path}] and method [{method}]")


def _check_template(es: FakeElasticsearch, body: bytes) -> None:
    """Refuse what this version does not know, as its parser does."""
    try:
        spec = orjson.loads(body)
    except orjson.JSONDecodeError:
        return
    if "data_stream_options" in (spec.get("template") or {}) and not has_failure_store(es.version):
        raise EsError(400, "x_content_parse_exception", "[1:2] [template] unknown field [data_stream_options]")


def _data_stream_options(store: Store, name: str, method: str, body: bytes) -> tuple[int, Any]:
    with store.lock:
        names = [n for n in store.data_streams if fnmatch.fnmatchcase(n, name)]
        if not names and not any(c in name for c in "*?"):
            raise EsError(404, "index_not_found_exception", f"no such index [{name}]", index=name)
        if method == "PUT":
            option = (orjson.loads(body or b"{}").get("failure_store") or {}).get("enabled")
            for n in names:
                store.failure_store[n] = bool(option)
            return 200, {"acknowledged": True}
        return 200, {
            "data_streams": [
                {"name": n, "options": {"failure_store": {"enabled": store.failure_store[n]}}} for n in names
            ]
        }


def _now_minus(expr: str) -> float | None:
    """Elasticsearch date math as far as the toolkit uses it: now, now-1d, now-24h, now-15m."""
    m = re.fullmatch(r"now(?:-(\d+)([dhms]))?", expr)
    if m is None:
        return None
    n = int(m.group(1) or 0)
    return time.time() - n * {"d": 86400, "h": 3600, "m": 60, "s": 1, None: 0}[m.group(2)]


def _timestamp(value: Any) -> float | None:
    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def _get_path(doc: dict[str, Any], path: str) -> Any:
    if path in doc:
        return doc[path]
    head, _, rest = path.partition(".")
    node = doc.get(head)
    return _get_path(node, rest) if rest and isinstance(node, dict) else None


def _matches(query: dict[str, Any], doc: dict[str, Any], ignored: list[str] | None, created: float | None) -> bool:
    """A query DSL subset: match_all, bool (filter, must, must_not), exists (``_ignored``
    too), range (on dates, with now-N date math)."""
    ((kind, spec),) = query.items()
    if kind == "match_all":
        return True
    if kind == "bool":
        clauses = [*spec.get("filter", []), *spec.get("must", [])]
        if isinstance(spec.get("filter"), dict):
            clauses = [spec["filter"], *spec.get("must", [])]
        return all(_matches(c, doc, ignored, created) for c in clauses) and not any(
            _matches(c, doc, ignored, created) for c in spec.get("must_not", [])
        )
    if kind == "exists":
        if spec["field"] == "_ignored":
            return bool(ignored)
        return _get_path(doc, spec["field"]) is not None
    if kind == "range":
        ((path, bounds),) = spec.items()
        value = _timestamp(_get_path(doc, path))
        if value is None:
            return False
        for op, bound in bounds.items():
            limit = _now_minus(bound) if isinstance(bound, str) else None
            limit = _timestamp(bound) if limit is None else limit
            if limit is None or op not in ("gte", "gt", "lte", "lt"):
                raise EsError(400, "parse_exception", f"failed to parse date field [{bound}]")
            if {"gte": value < limit, "gt": value <= limit, "lte": value > limit, "lt": value >= limit}[op]:
                return False
        return True
    raise EsError(400, "parsing_exception", f"unknown query [{kind}]")


def _crud(table: dict[str, Any], kind: str, plural: str, name: str, method: str, body: bytes) -> tuple[int, Any]:
    if method == "PUT":
        try:
            spec = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            raise EsError(400, "x_content_parse_exception", f"[1:1] {exc}") from None
        if kind == "index_template" and not spec.get("index_patterns"):
            raise EsError(
                400, "action_request_validation_exception", "Validation Failed: 1: index patterns are missing;"
            )
        table[name] = spec
        return 200, {"acknowledged": True}
    if method == "DELETE":
        if name not in table:
            raise EsError(404, "resource_not_found_exception", f"{kind} [{name}] missing")
        del table[name]
        return 200, {"acknowledged": True}
    if method == "HEAD":
        return (200 if name in table else 404), None
    found = [{"name": n, kind: t} for n, t in table.items() if fnmatch.fnmatchcase(n, name)]
    if not found:
        raise EsError(404, "resource_not_found_exception", f"{kind} matching [{name}] not found")
    return 200, {plural: found}


def _ilm(store: Store, name: str, method: str, body: bytes) -> tuple[int, Any]:
    if method == "PUT":
        spec = orjson.loads(body)
        if "policy" not in spec or "phases" not in spec["policy"]:
            raise EsError(400, "x_content_parse_exception", "[1:1] [put_lifecycle_request] policy is required")
        old = store.ilm_policies.get(name)
        version = (old["version"] + 1) if old else 1
        store.ilm_policies[name] = {"version": version, "policy": spec["policy"]}
        return 200, {"acknowledged": True}
    if method == "DELETE":
        store.ilm_policies.pop(name, None)
        return 200, {"acknowledged": True}
    if name not in store.ilm_policies:
        raise EsError(404, "resource_not_found_exception", f"Lifecycle policy not found: {name}")
    return 200, {name: store.ilm_policies[name]}


REJECTED_COORDINATING = (
    "rejected execution of coordinating operation [coordinating_and_primary_bytes=0, "
    "replica_bytes=0, all_bytes=0, coordinating_operation_bytes=1, max_coordinating_and_primary_bytes=0]"
)


def _bulk(es: FakeElasticsearch, default_target: str | None, body: bytes, query: dict[str, str]) -> tuple[int, Any]:
    started = time.perf_counter()
    store = es.store
    with store.lock:
        es.bulk_requests += 1
        if es.faults.request_failures:
            status = es.faults.request_failures.pop(0)
            if status == 429:
                raise EsError(429, "es_rejected_execution_exception", REJECTED_COORDINATING)
            raise EsError(
                status,
                "unavailable_shards_exception" if status == 503 else "internal_server_error",
                "[logs][0] primary shard is not active Timeout: [1m]",
            )
    if not body.endswith(b"\n"):
        raise EsError(400, "illegal_argument_exception", "The bulk request must be terminated by a newline [\\n]")
    lines = body.split(b"\n")[:-1]
    items: list[dict[str, Any]] = []
    errors = False
    i = 0
    rule = es.faults.item_failure
    while i < len(lines):
        raw = lines[i].rstrip(b"\r")
        i += 1
        if not raw.strip():
            continue
        try:
            action = orjson.loads(raw)
            ((op, meta),) = action.items()
        except (orjson.JSONDecodeError, ValueError, AttributeError):
            raise EsError(
                400,
                "illegal_argument_exception",
                f"Malformed action/metadata line [{i}], expected START_OBJECT or END_OBJECT",
            ) from None
        if op not in ("create", "index", "delete", "update"):
            raise EsError(
                400,
                "illegal_argument_exception",
                f"Malformed action/metadata line [{i}], expected one of [create, delete, index, update] "
                f"but found [{op}]",
            )
        source = None
        if op != "delete":
            if i >= len(lines):
                raise EsError(
                    400, "illegal_argument_exception", "The bulk request must be terminated by a newline [\\n]"
                )
            source = lines[i].rstrip(b"\r")
            i += 1
        target = meta.get("_index") or default_target
        if target is None:
            raise EsError(400, "action_request_validation_exception", "Validation Failed: 1: index is missing;")
        doc_id = meta.get("_id") or uuid.uuid4().hex[:20]
        item = _bulk_item(es, op, target, doc_id, source, rule)
        errors = errors or "error" in item
        items.append({op: item})
    return 200, {"errors": errors, "took": int((time.perf_counter() - started) * 1000), "items": items}


def _bulk_item(
    es: FakeElasticsearch,
    op: str,
    target: str,
    doc_id: str,
    source: bytes | None,
    rule: Callable[[str, dict[str, Any]], int | None] | None,
) -> dict[str, Any]:
    store = es.store
    try:
        doc: dict[str, Any] = {}
        if source is not None:
            try:
                parsed = orjson.loads(source)
            except orjson.JSONDecodeError as exc:
                raise EsError(400, "document_parsing_exception", f"[1:1] failed to parse: {exc}") from None
            if not isinstance(parsed, dict):
                raise EsError(
                    400,
                    "document_parsing_exception",
                    "[1:1] failed to parse: Malformed content, found extra data after parsing: START_OBJECT",
                )
            doc = parsed
        for pattern, key_id in es.item_forbidden.items():
            if fnmatch.fnmatchcase(target, pattern):
                raise EsError(
                    403,
                    "security_exception",
                    f"action [indices:data/write/bulk[s]] is unauthorized for API key id [{key_id}] of user "
                    f"[amebo_writer] on indices [{target}], this action is granted by the index "
                    "privileges [create_doc,create,index,write,all]",
                )
        if rule is not None:
            status = rule(doc_id, doc)
            if status == 429:
                raise EsError(
                    429,
                    "es_rejected_execution_exception",
                    "rejected execution of primary operation [shard_detail=[logs][0][P]]",
                )
            if status is not None:
                raise EsError(status, "unavailable_shards_exception", "[logs][0] primary shard is not active")
        with store.lock:
            index = store.write_index(target, op)
            if op == "delete":
                existed = index.docs.pop(doc_id, None) is not None
                return {
                    "_index": index.name,
                    "_id": doc_id,
                    "_version": 2,
                    "result": "deleted" if existed else "not_found",
                    "status": 200 if existed else 404,
                }
            try:  # a document is parsed (and mapped) before its version is checked
                if index.data_stream is not None and "@timestamp" not in doc:
                    raise EsError(
                        400,
                        "document_parsing_exception",
                        "[1:2] failed to parse: data stream timestamp field [@timestamp] is missing",
                    )
                ignored = index.check_and_map(doc, doc_id)
            except EsError as err:
                stream = index.data_stream
                if stream is None or err.type != "document_parsing_exception" or not has_failure_store(es.version):
                    raise
                if not store.failure_store[stream]:
                    err.extra["failure_store"] = "not_enabled"
                    raise
                return _to_failure_store(store, stream, doc_id, doc, err)
            if op == "create" and doc_id in index.docs:
                raise EsError(
                    409,
                    "version_conflict_engine_exception",
                    f"[{doc_id}]: version conflict, document already exists (current version [1])",
                    index_uuid="fake-uuid",
                    shard="0",
                    index=index.name,
                )
            created = doc_id not in index.docs
            index.docs[doc_id] = doc
            index.created[doc_id] = time.time()
            if ignored:
                index.ignored[doc_id] = ignored
            return {
                "_index": index.name,
                "_id": doc_id,
                "_version": 1,
                "result": "created" if created else "updated",
                "_shards": {"total": 1, "successful": 1, "failed": 0},
                "_seq_no": len(index.docs) - 1,
                "_primary_term": 1,
                "status": 201 if created else 200,
            }
    except EsError as err:
        return {"_index": target, "_id": doc_id, "status": err.status, "error": err.item_error()}


def _to_failure_store(store: Store, stream: str, doc_id: str, doc: dict[str, Any], err: EsError) -> dict[str, Any]:
    """Keep a document that failed *stream*'s mapping in its failure store, as 9.x does: a new
    document (its own id) holding the original, its id and the error; answered 201, used."""
    fs = store.failure_index(stream)
    fs_id = uuid.uuid4().hex[:20]
    fs.docs[fs_id] = {
        "@timestamp": datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "document": {"id": doc_id, "index": stream, "source": doc},
        "error": {
            "type": err.type,
            "message": err.reason,
            "stack_trace": f"o.e.i.m.DocumentParsingException: {err.reason}\n\tat ...",
        },
    }
    fs.created[fs_id] = time.time()
    return {
        "_index": fs.name,
        "_id": fs_id,
        "_version": 1,
        "result": "created",
        "_shards": {"total": 1, "successful": 1, "failed": 0},
        "_seq_no": len(fs.docs) - 1,
        "_primary_term": 1,
        "failure_store": "used",
        "status": 201,
    }
