"""Would shipping work?  ``amebo-logship check`` prints every answer; ``ship`` asks the same
questions before it reads a line (:func:`preflight`) and stops at the first that would make
Elasticsearch refuse the documents.  ``check`` also says what became of the last day's
documents that Elasticsearch could not index as they were (:func:`data_quality`): how many
went to the failure store, how many have ignored fields."""

from __future__ import annotations

import fnmatch
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from .connection import ClusterAnswer, ConnectionSettings, explain
from .elastic_setup import INDEX_TEMPLATE
from .errors import EXIT_AUTH, EXIT_CONFIG
from .http import HttpError, HttpNode, NetworkError

__all__ = [
    "CheckResult",
    "LiveCluster",
    "ask_cluster",
    "data_quality",
    "live_cluster",
    "preflight",
    "run_checks",
    "target_problem",
]

MIN_MAJOR = 8
_FORBIDDEN_CHARS = set('\\/*?"<>| ,#:')


@dataclass
class CheckResult:
    name: str
    ok: bool
    detail: str
    exit_code: int = 0
    warning: bool = False  # ok for shipping, but worth saying


@dataclass
class LiveCluster:
    """The node questions go to, its answer to ``GET /``, the settings that name it, and the
    nodes that could not be reached (shown URL, why)."""

    node: HttpNode
    answer: ClusterAnswer
    settings: ConnectionSettings
    down: list[tuple[str, str]]


def ask_cluster(node: HttpNode) -> ClusterAnswer:
    """``GET /``, with every way it can fail sorted into a :class:`ClusterAnswer`."""
    try:
        reply = node.request("GET", "/")
    except NetworkError as exc:
        return ClusterAnswer(None, "tls" if exc.tls else "unreachable", exc.message)
    if reply.status == 401:
        return ClusterAnswer(None, "credentials", "HTTP 401")
    if not reply.ok:
        reason, _ = reply.error()
        return ClusterAnswer(None, "forbidden" if reply.status == 403 else "http", f"HTTP {reply.status}: {reason}")
    # (what Elasticsearch's own clients check: every answer of Elasticsearch 7.14+ says so)
    info = reply.json()
    if reply.headers.get("x-elastic-product") != "Elasticsearch" or not isinstance(info, dict):
        return ClusterAnswer(None, "not_elasticsearch")
    return ClusterAnswer(info)


def live_cluster(settings: ConnectionSettings) -> LiveCluster:
    """Ask the nodes of *settings* in turn who they are; the first that answers (even to refuse
    the credentials) is the one the other questions go to.  When none answers, all of them,
    with the last answer."""
    from dataclasses import replace

    down: list[tuple[str, str]] = []
    answer = ClusterAnswer(None, "unreachable", "no node")
    if len(settings.urls) > 1:
        for url in settings.urls:
            one = replace(settings, urls=[url])
            node = HttpNode(url, one)
            answer = ask_cluster(node)
            if answer.problem != "unreachable":
                return LiveCluster(node, answer, one, down)
            node.close()
            down.append((one.shown_urls(), answer.detail))
        return LiveCluster(HttpNode(settings.urls[-1], settings), answer, settings, down)
    node = HttpNode(settings.urls[0], settings)
    return LiveCluster(node, ask_cluster(node), settings, down)


def _path(name: str) -> str:
    return quote(name, safe="")


def target_problem(name: str, *, is_index: bool = False) -> str | None:
    """Why Elasticsearch would refuse *name* as an index or data stream name, or None."""
    kind = "index" if is_index else "data stream"
    if not name:
        return f"the {kind} name is empty"
    if name != name.lower():
        return f"{kind} name {name!r} must be lowercase"
    bad = sorted(set(name) & _FORBIDDEN_CHARS)
    if bad:
        return f"{kind} name {name!r} may not contain {' '.join(repr(c) for c in bad)}"
    if name.startswith(("-", "_", "+")):
        return f"{kind} name {name!r} may not start with '-', '_' or '+'"
    if name in (".", ".."):
        return f"{kind} name {name!r} is not allowed"
    if len(name.encode()) > 255:
        return f"{kind} name {name[:40]!r}... is longer than 255 bytes"
    return None


def _cluster(answer: ClusterAnswer, settings: ConnectionSettings) -> Iterator[CheckResult]:
    """Connection, TLS and credentials; ends with a failed result when nothing else can be asked."""
    urls = settings.shown_urls()
    meaning = explain(answer, settings)
    if not meaning.ok:
        name = {"credentials": "credentials", "tls": "tls"}.get(answer.problem or "", "connection")
        if name == "credentials":
            yield CheckResult("connection", True, f"{urls} answers")
        yield CheckResult(name, False, meaning.message, meaning.exit_code)
        return
    tls = " over TLS, verified" if "https" in urls and not settings.insecure else ""
    yield CheckResult("connection", True, f"{urls} answers{tls}")
    yield CheckResult(
        "credentials",
        True,
        "accepted" if (settings.api_key or settings.username) else "none needed (security is off, or anonymous access)",
    )
    version = answer.version
    major = int(version.split(".")[0]) if version.split(".")[0].isdigit() else 0
    if answer.problem == "forbidden":
        yield CheckResult("version", True, "not known: the credentials may not read cluster information", warning=True)
        return
    yield CheckResult(
        "version",
        major >= MIN_MAJOR,
        f"Elasticsearch {version}" + ("" if major >= MIN_MAJOR else f": amebo-logship needs {MIN_MAJOR}.x or later"),
        0 if major >= MIN_MAJOR else EXIT_CONFIG,
    )


def run_checks(
    node: HttpNode,
    settings: ConnectionSettings,
    target: str,
    *,
    is_index: bool = False,
    quality: bool = False,
    answer: ClusterAnswer | None = None,
) -> Iterator[CheckResult]:
    """Connection and TLS, credentials, version, target, privileges (and with *quality*, the
    last day's failure store and ignored fields); stops at the first check the others depend on.
    *answer* is the cluster's to ``GET /``, when it was asked already."""
    answer = answer if answer is not None else ask_cluster(node)
    results = list(_cluster(answer, settings))
    yield from results
    if not all(r.ok for r in results):
        return
    problem = target_problem(target, is_index=is_index)
    if problem is not None:
        yield CheckResult(
            "target", False, f"{problem}: choose another --{'index' if is_index else 'data-stream'}", EXIT_CONFIG
        )
        return
    target_result, exists = _target(node, target, is_index)
    yield target_result
    yield _privileges(node, target, exists)
    if quality and exists:
        yield from data_quality(node, target, answer.version, is_index=is_index)


#: The window ``check`` counts refused and partly indexed documents over.
LAST_DAY = {"range": {"@timestamp": {"gte": "now-1d"}}}


def _count(node: HttpNode, target: str, *clauses: dict[str, Any]) -> int:
    answer = node.json("POST", f"/{_path(target)}/_count", {"query": {"bool": {"filter": [LAST_DAY, *clauses]}}})
    return int(answer["count"])


def _failure_store_enabled(node: HttpNode, target: str) -> bool | None:
    streams = (node.json("GET", f"/_data_stream/{_path(target)}") or {}).get("data_streams", [])
    found = streams[0].get("failure_store") if streams else None
    return None if found is None else bool(found.get("enabled"))


def data_quality(node: HttpNode, target: str, version: str, *, is_index: bool = False) -> Iterator[CheckResult]:
    """The last day of *target*: documents in its failure store, documents with ignored fields.
    Warnings, never failures: shipping works, the data or the mapping needs a look."""
    from .elastic_setup import has_failure_store

    if not is_index:
        if not has_failure_store(version):
            yield CheckResult(
                "failure store",
                True,
                f"none in Elasticsearch {version}: documents it cannot index are refused and dead-lettered",
            )
        else:
            try:
                enabled = _failure_store_enabled(node, target)
                stored = _count(node, f"{target}::failures") if enabled else 0
            except HttpError as exc:
                yield CheckResult(
                    "failure store",
                    True,
                    f"not checked (HTTP {exc.status}): reading {target}::failures needs the "
                    "read_failure_store index privilege",
                    warning=True,
                )
            except NetworkError as exc:
                yield CheckResult("failure store", True, f"not checked ({exc})", warning=True)
            else:
                if not enabled:
                    yield CheckResult(
                        "failure store",
                        True,
                        f"off for {target}: documents Elasticsearch cannot index are refused and dead-lettered "
                        "(amebo-logship setup turns it on)",
                    )
                elif stored:
                    yield CheckResult(
                        "failure store",
                        True,
                        f"{stored} documents of the last day could not be indexed and are in {target}::failures: "
                        f"see why with FROM {target}::failures (ES|QL) or the 'Amebo: failure store' search",
                        warning=True,
                    )
                else:
                    yield CheckResult("failure store", True, "on; no document of the last day is in it")
    try:
        ignored = _count(node, target, {"exists": {"field": "_ignored"}})
    except (HttpError, NetworkError) as exc:
        yield CheckResult("ignored fields", True, f"not counted ({exc})", warning=True)
        return
    if ignored:
        yield CheckResult(
            "ignored fields",
            True,
            f"{ignored} documents of the last day hold a value their field's type cannot take (kept, not indexed): "
            "see the 'Amebo: documents with ignored fields' search (_ignored : *)",
            warning=True,
        )
    else:
        yield CheckResult("ignored fields", True, "no document of the last day has one")


def preflight(
    node: HttpNode,
    settings: ConnectionSettings,
    target: str,
    *,
    is_index: bool = False,
    answer: ClusterAnswer | None = None,
) -> Iterator[CheckResult]:
    """What ``ship`` asks before reading: :func:`run_checks`, except that a missing template
    is a warning (Elasticsearch still takes the documents, with dynamic mappings)."""
    for result in run_checks(node, settings, target, is_index=is_index, answer=answer):
        if result.name == "target" and not result.ok and "amebo-logship setup" in result.detail:
            yield CheckResult("target", True, result.detail, warning=True)
        else:
            yield result


def _target(node: HttpNode, target: str, is_index: bool) -> tuple[CheckResult, bool]:
    """(the verdict on *target*, whether it exists already)."""
    if is_index:
        try:
            status = node.request("HEAD", f"/{_path(target)}").status
        except NetworkError as exc:
            return CheckResult("target", True, f"index {target}: not checked ({exc})", warning=True), True
        if status not in (200, 404):
            return CheckResult("target", True, f"index {target}: not checked (HTTP {status})", warning=True), True
        exists = status == 200
        return CheckResult(
            "target", True, f"index {target} " + ("exists" if exists else "will be created on the first write")
        ), exists
    try:
        node.json("GET", f"/_data_stream/{_path(target)}")
        return CheckResult("target", True, f"data stream {target} exists"), True
    except HttpError as exc:
        if exc.status != 404:
            return CheckResult(
                "target",
                True,
                f"data stream {target}: not checked (HTTP {exc.status}: the credentials may not read its metadata)",
                warning=True,
            ), True
    except NetworkError as exc:
        return CheckResult("target", True, f"data stream {target}: not checked ({exc})", warning=True), True
    try:
        templates = (node.json("GET", "/_index_template/*") or {}).get("index_templates", [])
    except (HttpError, NetworkError):
        templates = []
    matching = [
        t
        for t in templates
        if "data_stream" in t["index_template"]
        and any(fnmatch.fnmatchcase(target, p) for p in t["index_template"].get("index_patterns", []))
    ]
    if matching:
        best = max(matching, key=lambda t: t["index_template"].get("priority", 0))
        if best["name"] != INDEX_TEMPLATE:
            # Elasticsearch takes the documents, but with another template's mappings: the
            # Kibana objects, the ILM policy and the failure store set-up are not this project's
            return CheckResult(
                "target",
                True,
                f"data stream {target} will be created on the first write with template {best['name']}, "
                f"not this project's {INDEX_TEMPLATE}: run `amebo-logship setup` first, or its documents "
                "get generic mappings (keyword and text guessed per value), no ILM policy of ours, and "
                "Kibana's Amebo objects find fields missing",
                warning=True,
            ), False
        return CheckResult(
            "target", True, f"data stream {target} will be created on the first write (template {best['name']})"
        ), False
    return CheckResult(
        "target",
        False,
        f"no data stream {target} and no data-stream template matches it: run "
        "`amebo-logship setup`, or name a data stream matching logs-*-*",
        EXIT_CONFIG,
    ), False


def _privileges(node: HttpNode, target: str, exists: bool) -> CheckResult:
    wanted = ["create_doc"] if exists else ["create_doc", "auto_configure"]
    try:
        asked = {"index": [{"names": [target], "privileges": wanted}]}
        answer = node.json("POST", "/_security/user/_has_privileges", asked)
    except HttpError as exc:
        if exc.status in (400, 500) or "security" in f"{exc.error_type} {exc.reason}".lower():
            return CheckResult("privileges", True, "not checked: security is off on this cluster")
        return CheckResult("privileges", False, f"cannot check privileges (HTTP {exc.status})", EXIT_AUTH)
    except NetworkError as exc:
        return CheckResult("privileges", True, f"not checked ({exc})", warning=True)
    answer = answer if isinstance(answer, dict) else {}
    if answer.get("has_all_requested"):
        return CheckResult("privileges", True, f"may {' and '.join(wanted)} in {target}")
    granted = answer.get("index", {}).get(target, {})
    missing = [p for p in wanted if not granted.get(p)] or wanted
    return CheckResult(
        "privileges",
        False,
        f"the credentials may not create documents in {target} (missing "
        f"{', '.join(missing)}): grant {' and '.join(wanted)} on it (or on "
        "logs-amebo-*)",
        EXIT_AUTH,
    )
