"""The Elasticsearch side, generated from the record schema: ILM policy and templates.

* ``amebo-logs`` ILM policy: roll over at 50 GB per primary shard or 30 days; delete after a
  configurable age.
* ``amebo-logs@mappings`` component template: every field of :mod:`amebo_logging.schema`.
* ``amebo-logs@settings`` component template: the ILM policy.
* ``amebo-logs`` index template for ``logs-amebo-*`` data streams, priority 200 (above the
  stack's ``logs`` template, 100), composed with the stack's ``logs@mappings``,
  ``logs@settings`` and ``ecs@mappings`` where the cluster has them.

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
STACK_COMPONENTS: Final = ("logs@mappings", "logs@settings", "ecs@mappings")
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


def component_settings() -> dict[str, Any]:
    return {"template": {"settings": {"index": {"lifecycle": {"name": ILM_POLICY}}}}, "_meta": _META}


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
    """File name -> JSON body of each resource, as shipped in amebo_logging/resources/."""
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


def apply(client: Any, delete_after: str = "90d", report: Callable[[Change], None] = lambda c: None) -> list[Change]:
    """Install the ILM policy and templates; each is created, updated or left unchanged.

    Raises the client's ApiError when the cluster refuses one."""
    changes: list[Change] = []

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
    for name, body in ((COMPONENT_SETTINGS, component_settings()), (COMPONENT_MAPPINGS, component_mappings())):
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
