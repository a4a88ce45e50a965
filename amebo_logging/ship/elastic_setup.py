"""The Elasticsearch side, generated from the record schema: ILM policy and templates.

* ``amebo-logs`` ILM policy: roll over at 50 GB per primary shard or 30 days; delete after a
  configurable age.
* ``amebo-logs@mappings`` component template: every field of :mod:`amebo_logging.schema`.
* ``amebo-logs@settings`` component template: the ILM policy, and the failure store's stance
  (``data_stream_options``) where the cluster has the failure store (8.19, 9.1 and later).
* ``amebo-logs`` index template for ``logs-amebo-*`` data streams, priority 200 (above the
  stack's ``logs`` template, 100), composed as the stack's own ``logs`` template is
  (``logs@mappings``, ``logs@settings``, ``logs@custom``, ``ecs@mappings``, each only where
  the cluster has it), then ours, which win.

**The failure store.**  ``logs@settings`` sets ``index.mapping.ignore_malformed``: a value a
numeric, date, ip or boolean field cannot take is kept in ``_source`` but not indexed, and
the field is listed in the document's ``_ignored``.  A document that still cannot be indexed
(an object where a value is mapped, a missing ``@timestamp``) is refused; with the failure
store on, Elasticsearch keeps it in the data stream's ``::failures`` indices instead and
answers 201.  :func:`apply` turns the failure store on by default (it is on for new
``logs-*-*`` streams from 9.2 anyway), for new streams through the template and for existing
``logs-amebo-*`` streams through their options; off, refused documents come back to the
shipper, which dead-letters them on its host.

The JSON of each is also written to ``amebo_logging/resources/`` (``python -m
amebo_logging.ship.elastic_setup --write``); a test fails when those files drift from this
module.  :func:`apply` installs them idempotently.
"""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from ..schema import ECS_VERSION, es_properties

__all__ = [
    "COMPONENT_MAPPINGS",
    "COMPONENT_SETTINGS",
    "ILM_POLICY",
    "INDEX_TEMPLATE",
    "Change",
    "apply",
    "component_mappings",
    "component_settings",
    "ilm_policy",
    "index_template",
    "resources",
]

ILM_POLICY: Final = "amebo-logs"
COMPONENT_MAPPINGS: Final = "amebo-logs@mappings"
COMPONENT_SETTINGS: Final = "amebo-logs@settings"
INDEX_TEMPLATE: Final = "amebo-logs"
PATTERN: Final = "logs-amebo-*"
#: The stack's components, composed in the order its own ``logs`` template uses.
STACK_COMPONENTS: Final = ("logs@mappings", "logs@settings", "logs@custom", "ecs@mappings")
RESOURCES: Final = Path(__file__).resolve().parent.parent / "resources"
_META: Final = {"managed_by": "amebo-logship", "description": "Amebo's ECS log records", "ecs_version": ECS_VERSION}


def ilm_policy(delete_after: str = "90d") -> dict[str, Any]:
    """Hot with rollover at 50 GB per primary shard or 30 days; delete *delete_after* after rollover."""
    return {
        "policy": {
            "_meta": _META,
            "phases": {
                "hot": {
                    "min_age": "0ms",
                    "actions": {"rollover": {"max_primary_shard_size": "50gb", "max_age": "30d"}},
                },
                "delete": {"min_age": delete_after, "actions": {"delete": {}}},
            },
        }
    }


def component_mappings() -> dict[str, Any]:
    """Every schema field, typed as schema.py says."""
    return {"template": {"mappings": {"properties": es_properties()}}, "_meta": _META}


def has_failure_store(version: str) -> bool:
    """Whether Elasticsearch *version* has the failure store (GA in 8.19 and 9.1; not 9.0)."""
    try:
        major, minor = (int(x) for x in version.split(".")[:2])
    except ValueError:
        return False
    return (8, 19) <= (major, minor) < (9, 0) or (major, minor) >= (9, 1)


def component_settings(failure_store: bool | None = True) -> dict[str, Any]:
    """The ILM policy; and the failure store on or off (None: the cluster has no failure store,
    so the template does not mention it)."""
    template: dict[str, Any] = {"settings": {"index": {"lifecycle": {"name": ILM_POLICY}}}}
    if failure_store is not None:
        template["data_stream_options"] = {"failure_store": {"enabled": failure_store}}
    return {"template": template, "_meta": _META}


def index_template() -> dict[str, Any]:
    return {
        "index_patterns": [PATTERN],
        "data_stream": {},
        "priority": 200,
        "composed_of": [*STACK_COMPONENTS, COMPONENT_SETTINGS, COMPONENT_MAPPINGS],
        "ignore_missing_component_templates": list(STACK_COMPONENTS),
        "_meta": _META,
    }


def resources(delete_after: str = "90d") -> dict[str, dict[str, Any]]:
    """File name -> JSON body of each resource, as shipped in amebo_logging/resources/ (the
    settings as for a cluster with the failure store, on)."""
    return {
        "ilm-policy.json": ilm_policy(delete_after),
        "component-template-mappings.json": component_mappings(),
        "component-template-settings.json": component_settings(),
        "index-template.json": index_template(),
    }


def render(body: dict[str, Any]) -> str:
    return json.dumps(body, indent=2, sort_keys=True) + "\n"


@dataclass
class Change:
    kind: str  # "ILM policy", "component template", "index template"
    name: str
    action: str  # "created", "updated", "unchanged"


def _subset(wanted: Any, found: Any) -> bool:
    """Whether everything in *wanted* is in *found* (Elasticsearch adds defaults of its own)."""
    if isinstance(wanted, dict):
        return isinstance(found, dict) and all(k in found and _subset(v, found[k]) for k, v in wanted.items())
    if isinstance(wanted, list):
        if not isinstance(found, list) or len(wanted) != len(found):
            return False
        return all(_subset(a, b) for a, b in zip(wanted, found, strict=True))
    return bool(wanted == found or str(wanted) == str(found))


def failure_store_stance(version: str, wanted: bool) -> str:
    """The line ``setup`` prints to say where documents Elasticsearch cannot index go."""
    if not has_failure_store(version):
        return (
            f"failure store: Elasticsearch {version} has none (8.19, 9.1 and later do): documents it cannot "
            "index are refused, and amebo-logship keeps them in its dead-letter file"
        )
    if wanted:
        return (
            f"failure store: on for {PATTERN}: documents Elasticsearch cannot index are kept in "
            f"{PATTERN}::failures (ES|QL: FROM {PATTERN}::failures; Kibana: the 'Amebo: failure store' search)"
        )
    return (
        f"failure store: off for {PATTERN} (--no-failure-store): documents Elasticsearch cannot index are "
        "refused, and amebo-logship keeps them in its dead-letter file"
    )


def apply(
    client: Any,
    delete_after: str = "90d",
    report: Callable[[Change], None] = lambda c: None,
    *,
    failure_store: bool = True,
    version: str | None = None,
) -> list[Change]:
    """Install the ILM policy and templates; each is created, updated or left unchanged.  Where
    the cluster (*version*, asked when not given) has the failure store, set it *failure_store*
    in the template and on the existing ``logs-amebo-*`` data streams.

    Raises the client's ApiError when the cluster refuses one."""
    changes: list[Change] = []
    if version is None:
        version = str(client.info()["version"]["number"])
    stance = failure_store if has_failure_store(version) else None

    def put(
        kind: str,
        name: str,
        wanted: dict[str, Any],
        get: Callable[[], Any],
        current: Callable[[Any], Any],
        write: Callable[[], Any],
    ) -> None:
        found = None
        try:
            found = current(get())
        except Exception as exc:  # 404: not there yet
            if getattr(exc, "status_code", None) != 404:
                raise
        if found is not None and _subset(wanted, found):
            change = Change(kind, name, "unchanged")
        else:
            write()
            change = Change(kind, name, "created" if found is None else "updated")
        changes.append(change)
        report(change)

    policy = ilm_policy(delete_after)
    put(
        "ILM policy",
        ILM_POLICY,
        policy["policy"],
        lambda: client.ilm.get_lifecycle(name=ILM_POLICY),
        lambda r: r.body[ILM_POLICY]["policy"],
        lambda: client.ilm.put_lifecycle(name=ILM_POLICY, policy=policy["policy"]),
    )
    for name, body in ((COMPONENT_SETTINGS, component_settings(stance)), (COMPONENT_MAPPINGS, component_mappings())):
        put(
            "component template",
            name,
            body,
            functools.partial(client.cluster.get_component_template, name=name),
            lambda r: r.body["component_templates"][0]["component_template"],
            functools.partial(client.cluster.put_component_template, name=name, body=body),
        )
    template = index_template()
    put(
        "index template",
        INDEX_TEMPLATE,
        template,
        lambda: client.indices.get_index_template(name=INDEX_TEMPLATE),
        lambda r: r.body["index_templates"][0]["index_template"],
        lambda: client.indices.put_index_template(name=INDEX_TEMPLATE, body=template),
    )
    if stance is not None:
        # the template's data_stream_options apply only when a stream is created: set the rest
        for stream in client.indices.get_data_stream(name=PATTERN).body.get("data_streams", []):
            if bool((stream.get("failure_store") or {}).get("enabled")) == stance:
                continue
            client.perform_request(
                "PUT",
                f"/_data_stream/{stream['name']}/_options",
                body={"failure_store": {"enabled": stance}},
                headers={"accept": "application/json", "content-type": "application/json"},
            )
            change = Change("failure store of data stream", stream["name"], "enabled" if stance else "disabled")
            changes.append(change)
            report(change)
    return changes


def write_resources(directory: Path = RESOURCES) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name, body in resources().items():
        path = directory / name
        path.write_text(render(body))
        written.append(path)
    return written


def _checkout() -> Path | None:
    """The source checkout this module runs from, or None when it is an installed copy."""
    root = RESOURCES.parent.parent
    return root if (root / "pyproject.toml").is_file() and (root / "kibana").is_dir() else None


if __name__ == "__main__":  # python -m amebo_logging.ship.elastic_setup --write
    if sys.argv[1:] != ["--write"]:
        sys.exit("usage: python -m amebo_logging.ship.elastic_setup --write   (in a source checkout)")
    if _checkout() is None:
        sys.exit(
            f"elastic_setup --write regenerates a source checkout's files, and {RESOURCES.parent} is an "
            "installed copy: run it from a clone of amebo-logging (pip install -e .)"
        )
    from .kibana import write_ndjson

    for path in [*write_resources(), write_ndjson()]:
        print(f"wrote {path}")
