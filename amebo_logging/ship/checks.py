"""``amebo-logship check``: would shipping work?  One result per check, each saying what to do."""

from __future__ import annotations

import fnmatch
from collections.abc import Iterator
from dataclasses import dataclass

from elasticsearch import ApiError, Elasticsearch

from .connection import ConnectionSettings, ask_cluster
from .errors import EXIT_AUTH, EXIT_CONFIG

__all__ = ["CheckResult", "run_checks"]

MIN_MAJOR = 8


@dataclass
class CheckResult:
    name: str
    ok: bool
    detail: str
    exit_code: int = 0


def run_checks(client: Elasticsearch, settings: ConnectionSettings, target: str, *,
               is_index: bool = False) -> Iterator[CheckResult]:
    """Connection and TLS, credentials, version, target, privileges; stops at the first
    check the others depend on."""
    urls = settings.shown_urls()
    answer = ask_cluster(client)
    problem, detail = answer.problem, answer.detail
    if problem == "tls":
        yield CheckResult("tls", False, f"TLS with {urls} failed ({detail}): give the cluster's CA certificate "
                                        "with --ca-certs", EXIT_CONFIG)
        return
    if problem == "unreachable":
        yield CheckResult("connection", False, f"cannot reach {urls} ({detail}): is Elasticsearch running and "
                                               "reachable from here? check --es-url", EXIT_CONFIG)
        return
    if problem == "credentials":
        yield CheckResult("connection", True, f"{urls} answers")
        yield CheckResult("credentials", False, "Elasticsearch refused the credentials (HTTP 401): check --api-key "
                                                "or --username/--password", EXIT_AUTH)
        return
    if problem == "not_elasticsearch":
        yield CheckResult("connection", False, f"the server at {urls} is not Elasticsearch", EXIT_CONFIG)
        return
    if problem is not None:
        yield CheckResult("connection", False, f"{urls} answered {detail}",
                          EXIT_AUTH if problem == "forbidden" else EXIT_CONFIG)
        return
    yield CheckResult("connection", True, f"{urls} answers" + (" over TLS, verified" if "https" in urls and
                                                               not settings.insecure else ""))
    yield CheckResult("credentials", True, "accepted" if (settings.api_key or settings.username) else
                      "none needed (security is off, or anonymous access)")
    version = answer.version
    major = int(version.split(".")[0]) if version.split(".")[0].isdigit() else 0
    yield CheckResult("version", major >= MIN_MAJOR,
                      f"Elasticsearch {version}" + ("" if major >= MIN_MAJOR else
                                                    f": amebo-logship needs {MIN_MAJOR}.x or later"),
                      0 if major >= MIN_MAJOR else EXIT_CONFIG)
    yield _target(client, target, is_index)
    yield _privileges(client, target)


def _target(client: Elasticsearch, target: str, is_index: bool) -> CheckResult:
    if is_index:
        exists = client.options(ignore_status=404).indices.exists(index=target)
        return CheckResult("target", True, f"index {target} " + ("exists" if exists else
                                                                 "will be created on the first write"))
    try:
        client.indices.get_data_stream(name=target)
        return CheckResult("target", True, f"data stream {target} exists")
    except ApiError as exc:
        if exc.status_code != 404:
            return CheckResult("target", False, f"cannot read data stream {target}: HTTP {exc.status_code}: "
                                                "grant view_index_metadata on it, or check it by hand", EXIT_AUTH)
    try:
        templates = client.indices.get_index_template(name="*").body.get("index_templates", [])
    except ApiError:
        templates = []
    matching = [t for t in templates if "data_stream" in t["index_template"] and any(
        fnmatch.fnmatchcase(target, p) for p in t["index_template"].get("index_patterns", []))]
    if matching:
        best = max(matching, key=lambda t: t["index_template"].get("priority", 0))
        return CheckResult("target", True, f"data stream {target} will be created on the first write "
                                           f"(template {best['name']})")
    return CheckResult("target", False, f"no data stream {target} and no data-stream template matches it: run "
                                        "`amebo-logship setup`, or name a data stream matching logs-*-*", EXIT_CONFIG)


def _privileges(client: Elasticsearch, target: str) -> CheckResult:
    try:
        answer = client.security.has_privileges(index=[{"names": [target], "privileges": ["create_doc"]}])
    except ApiError as exc:
        if exc.status_code in (400, 500) or "security" in str(exc.message).lower():
            return CheckResult("privileges", True, "not checked: security is off on this cluster")
        return CheckResult("privileges", False, f"cannot check privileges (HTTP {exc.status_code})", EXIT_AUTH)
    if answer.body.get("has_all_requested"):
        return CheckResult("privileges", True, f"may create documents in {target}")
    return CheckResult("privileges", False, f"the credentials may not create documents in {target}: grant "
                                            "create_doc and auto_configure on it (or on logs-amebo-*)", EXIT_AUTH)
