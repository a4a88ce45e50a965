"""The Kibana saved objects of kibana/amebo.ndjson, read as Kibana reads them (a test helper)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from amebo_logging.ship import kibana

ROOT = Path(__file__).resolve().parent.parent


def ndjson_objects() -> list[dict[str, Any]]:
    """Every saved object, in file order."""
    lines = (ROOT / "kibana" / "amebo.ndjson").read_text().splitlines()
    return [json.loads(line) for line in lines]


def fields_used(objs: list[dict[str, Any]]) -> set[str]:
    """Every field the objects name: time field, formats, columns, KQL, Lens columns."""
    used = set()
    kql_field = re.compile(r"([A-Za-z_@][\w.@]*)\s*:")
    for o in objs:
        a = o["attributes"]
        if o["type"] == "index-pattern":
            used.add(a["timeFieldName"])
            used.update(json.loads(a["fieldFormatMap"]))
        if o["type"] == "search":
            used.update(a["columns"])
            used.update(kql_field.findall(json.loads(a["kibanaSavedObjectMeta"]["searchSourceJSON"])["query"]["query"]))
        if o["type"] == "lens":
            used.update(kql_field.findall(a["state"]["query"]["query"]))
            for layer in a["state"]["datasourceStates"]["formBased"]["layers"].values():
                for col in layer["columns"].values():
                    if col["sourceField"] != "___records___":
                        used.add(col["sourceField"])
                    if "filter" in col:
                        used.update(kql_field.findall(col["filter"]["query"]))
    return used


def on_failures_view(o: dict[str, Any]) -> bool:
    """Whether *o* is, or is on, the failure-store data view."""
    return any(r["id"] == kibana.FAILURES_VIEW_ID for r in o["references"]) or o["id"] == kibana.FAILURES_VIEW_ID
