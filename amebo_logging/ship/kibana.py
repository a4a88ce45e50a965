"""Kibana saved objects for Amebo's logs, generated from the schema: ``kibana/amebo.ndjson``.

A data view for ``logs-amebo-*`` (``correlation_id`` rendered as a link to Discover filtered
on it, relative so that it works behind ``server.basePath``), one for the failure store
(``logs-amebo-*::failures``: documents Elasticsearch could not index; Kibana 8.19 and 9.1+
read the ``::failures`` selector), six saved searches (among them documents with ignored
fields, ``_ignored : *``, and the failure store), six Lens visualizations in the
``formBased`` form, and a dashboard.  Ids are stable; migration versions are those Kibana
8.9 exports, so the file imports into Kibana 8.9 and later, 9.x included (``POST
/api/saved_objects/_import``).

:func:`import_objects` posts the file to Kibana's import API with ``overwrite=true``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Final

from ..schema import field

__all__ = ["DATA_VIEW_ID", "FAILURES_VIEW_ID", "FAILURE_FIELDS", "NDJSON", "import_objects", "objects", "write_ndjson"]

NDJSON: Final = Path(__file__).resolve().parent.parent.parent / "kibana" / "amebo.ndjson"
DATA_VIEW_ID: Final = "amebo-logs"
FAILURES_VIEW_ID: Final = "amebo-logs-failures"
#: The fields of a failure store document, as Elasticsearch writes them (not our schema's).
FAILURE_FIELDS: Final = (
    "@timestamp",
    "error.type",
    "error.message",
    "error.stack_trace",
    "document.id",
    "document.index",
)
CORE_MIGRATION_VERSION: Final = "8.8.0"
TYPE_MIGRATION_VERSION: Final = {"index-pattern": "8.0.0", "search": "8.0.0", "lens": "8.9.0", "dashboard": "8.9.0"}
_LAYER: Final = "layer1"


def _f(name: str) -> str:
    """*name*, checked against the schema: a saved object can only use declared fields."""
    return field(name).name


def _obj(type_: str, id_: str, attributes: dict[str, Any], references: list[dict[str, str]]) -> dict[str, Any]:
    return {
        "attributes": attributes,
        "coreMigrationVersion": CORE_MIGRATION_VERSION,
        "id": id_,
        "managed": False,
        "references": references,
        "type": type_,
        "typeMigrationVersion": TYPE_MIGRATION_VERSION[type_],
    }


def data_view() -> dict[str, Any]:
    # Relative to Kibana's /app/: the URL formatter prefixes origin, server.basePath and /app/
    # (an absolute /app/... link loses a base path).
    discover = (
        "discover#/?_g=(time:(from:now-7d,to:now))"
        f"&_a=(index:'{DATA_VIEW_ID}',dataSource:(dataViewId:'{DATA_VIEW_ID}',type:dataView),"
        "query:(language:kuery,query:'correlation_id:\"{{value}}\"'))"
    )
    formats = {
        _f("correlation_id"): {"id": "url", "params": {"urlTemplate": discover, "labelTemplate": "{{value}}"}},
        _f("event.duration"): {
            "id": "duration",
            "params": {"inputFormat": "nanoseconds", "outputFormat": "humanizePrecise"},
        },
        _f("amebo.payload_size"): {"id": "bytes"},
    }
    return _obj(
        "index-pattern",
        DATA_VIEW_ID,
        {
            "title": "logs-amebo-*",
            "name": "Amebo logs",
            "timeFieldName": _f("@timestamp"),
            "fieldFormatMap": json.dumps(formats, sort_keys=True),
            "allowNoIndex": True,
        },
        [],
    )


def failures_view() -> dict[str, Any]:
    """The failure store of every Amebo data stream, as a data view."""
    return _obj(
        "index-pattern",
        FAILURES_VIEW_ID,
        {
            "title": "logs-amebo-*::failures",
            "name": "Amebo logs: failure store",
            "timeFieldName": "@timestamp",
            "fieldFormatMap": "{}",
            "allowNoIndex": True,
        },
        [],
    )


def saved_search(
    id_: str, title: str, query: str, columns: list[str], view: str = DATA_VIEW_ID, checked: bool = True
) -> dict[str, Any]:
    source = {
        "query": {"query": query, "language": "kuery"},
        "filter": [],
        "indexRefName": "kibanaSavedObjectMeta.searchSourceJSON.index",
    }
    return _obj(
        "search",
        id_,
        {
            "title": title,
            "description": "",
            "columns": [_f(c) for c in columns] if checked else list(columns),
            "sort": [["@timestamp", "desc"]],
            "grid": {},
            "hideChart": False,
            "kibanaSavedObjectMeta": {"searchSourceJSON": json.dumps(source, sort_keys=True)},
        },
        [{"id": view, "name": "kibanaSavedObjectMeta.searchSourceJSON.index", "type": "index-pattern"}],
    )


# --- Lens columns -------------------------------------------------------------------------


def _date_histogram() -> dict[str, Any]:
    return {
        "label": "@timestamp",
        "dataType": "date",
        "operationType": "date_histogram",
        "sourceField": _f("@timestamp"),
        "isBucketed": True,
        "scale": "interval",
        "params": {"interval": "auto", "includeEmptyRows": True, "dropPartials": False},
    }


def _terms(name: str, size: int = 10, order_by: str = "count") -> dict[str, Any]:
    """Top *size* values of *name*, ordered by the layer's column *order_by*."""
    return {
        "label": f"Top {size} values of {name}",
        "dataType": "string",
        "operationType": "terms",
        "sourceField": _f(name),
        "isBucketed": True,
        "scale": "ordinal",
        "params": {
            "size": size,
            "orderBy": {"type": "column", "columnId": order_by},
            "orderDirection": "desc",
            "otherBucket": True,
            "missingBucket": False,
        },
    }


def _count(label: str = "Count of records", kql: str | None = None) -> dict[str, Any]:
    column: dict[str, Any] = {
        "label": label,
        "dataType": "number",
        "operationType": "count",
        "sourceField": "___records___",
        "isBucketed": False,
        "scale": "ratio",
        "params": {"emptyAsNull": True},
    }
    if kql is not None:
        column["filter"] = {"query": kql, "language": "kuery"}
    return column


def _percentile(name: str, pct: int) -> dict[str, Any]:
    return {
        "label": f"{pct}th percentile of {name}",
        "dataType": "number",
        "operationType": "percentile",
        "sourceField": _f(name),
        "isBucketed": False,
        "scale": "ratio",
        "params": {"percentile": pct},
    }


def lens(
    id_: str,
    title: str,
    columns: dict[str, dict[str, Any]],
    visualization: dict[str, Any],
    vis_type: str,
    kql: str = "",
) -> dict[str, Any]:
    order = [c for c in columns if columns[c]["isBucketed"]] + [c for c in columns if not columns[c]["isBucketed"]]
    state = {
        "datasourceStates": {
            "formBased": {"layers": {_LAYER: {"columnOrder": order, "columns": columns, "incompleteColumns": {}}}}
        },
        "visualization": visualization,
        "query": {"query": kql, "language": "kuery"},
        "filters": [],
        "internalReferences": [],
        "adHocDataViews": {},
    }
    return _obj(
        "lens",
        id_,
        {"title": title, "description": "", "visualizationType": vis_type, "state": state},
        [{"id": DATA_VIEW_ID, "name": f"indexpattern-datasource-layer-{_LAYER}", "type": "index-pattern"}],
    )


def _xy(series: str, x: str, y: list[str], split: str | None = None) -> dict[str, Any]:
    layer: dict[str, Any] = {
        "layerId": _LAYER,
        "layerType": "data",
        "seriesType": series,
        "xAccessor": x,
        "accessors": y,
    }
    if split is not None:
        layer["splitAccessor"] = split
    return {
        "legend": {"isVisible": True, "position": "right"},
        "valueLabels": "hide",
        "preferredSeriesType": series,
        "layers": [layer],
    }


def _table(columns: list[str]) -> dict[str, Any]:
    return {"layerId": _LAYER, "layerType": "data", "columns": [{"columnId": c} for c in columns]}


def visualizations() -> list[dict[str, Any]]:
    return [
        lens(
            "amebo-events-per-action",
            "Events published per action",
            {"time": _date_histogram(), "count": _count("Events"), "action": _terms("amebo.action")},
            _xy("bar_stacked", "time", ["count"], "action"),
            "lnsXY",
            'message : "event_published"',
        ),
        lens(
            "amebo-levels-over-time",
            "Log levels over time",
            {"time": _date_histogram(), "count": _count(), "level": _terms("log.level", 5)},
            _xy("bar_stacked", "time", ["count"], "level"),
            "lnsXY",
        ),
        lens(
            "amebo-error-rate",
            "Error rate (errors and criticals per interval)",
            {"time": _date_histogram(), "count": _count("Errors", "log.level : (error or critical)")},
            _xy("line", "time", ["count"]),
            "lnsXY",
        ),
        lens(
            "amebo-webhook-latency-p95",
            "Webhook delivery latency, p95",
            {
                "time": _date_histogram(),
                "p95": _percentile("event.duration", 95),
                "action": _terms("amebo.action", 5, order_by="p95"),
            },
            _xy("line", "time", ["p95"], "action"),
            "lnsXY",
            'message : ("webhook_delivered" or "webhook_failed")',
        ),
        lens(
            "amebo-top-error-types",
            "Top error types",
            {"type": _terms("error.type", 10), "count": _count()},
            _table(["type", "count"]),
            "lnsDatatable",
            "error.type : *",
        ),
        lens(
            "amebo-validation-failures",
            "Schema validation failures by action",
            {"action": _terms("amebo.action", 10), "count": _count("Failures")},
            _table(["action", "count"]),
            "lnsDatatable",
            'message : "schema_validation_failed"',
        ),
    ]


def searches() -> list[dict[str, Any]]:
    return [
        saved_search(
            "amebo-errors",
            "Amebo: errors",
            "log.level : (error or critical)",
            ["log.level", "log.logger", "message", "error.type", "error.message", "correlation_id"],
        ),
        saved_search(
            "amebo-events-published",
            "Amebo: events published",
            'message : "event_published"',
            ["amebo.action", "amebo.application", "amebo.event_id", "amebo.payload_size", "correlation_id"],
        ),
        saved_search(
            "amebo-webhook-failures",
            "Amebo: webhook delivery failures",
            'message : "webhook_failed"',
            [
                "amebo.subscription",
                "amebo.action",
                "url.full",
                "http.response.status_code",
                "amebo.attempt",
                "amebo.max_retries",
                "error.message",
            ],
        ),
        saved_search(
            "amebo-one-request",
            "Amebo: requests by correlation id (click an id to follow one)",
            "correlation_id : *",
            ["log.level", "log.logger", "message", "url.path", "http.response.status_code", "event.duration"],
        ),
        saved_search(
            "amebo-ignored-fields",
            "Amebo: documents with ignored fields (a value its field's type cannot take; open one to see which)",
            "_ignored : *",
            ["log.level", "log.logger", "message", "log.file.path", "log.offset"],
        ),
        saved_search(
            "amebo-failure-store",
            "Amebo: failure store (documents Elasticsearch could not index)",
            "",
            ["error.type", "error.message", "document.id", "document.index"],
            view=FAILURES_VIEW_ID,
            checked=False,
        ),
    ]


#: Kibana's dashboard grid is 48 columns wide; a panel here is 15 rows high.
GRID_COLUMNS, PANEL_HEIGHT = 48, 15


def layout(widths: list[int]) -> list[tuple[int, int]]:
    """The (x, y) of panels of *widths*, placed in reading order: a panel that does not fit
    beside the previous one starts a new row."""
    x = y = 0
    placed = []
    for w in widths:
        if x + w > GRID_COLUMNS:
            x, y = 0, y + PANEL_HEIGHT
        placed.append((x, y))
        x += w
    return placed


def dashboard(panels: list[dict[str, Any]]) -> dict[str, Any]:
    grid, refs = [], []
    widths = [GRID_COLUMNS if obj["type"] == "search" else GRID_COLUMNS // 2 for obj in panels]
    for n, (obj, w, (x, y)) in enumerate(zip(panels, widths, layout(widths), strict=True)):
        key = f"p{n + 1}"
        grid.append(
            {
                "type": obj["type"],
                "panelIndex": key,
                "panelRefName": f"panel_{key}",
                "embeddableConfig": {},
                "gridData": {"x": x, "y": y, "w": w, "h": PANEL_HEIGHT, "i": key},
            }
        )
        refs.append({"id": obj["id"], "name": f"panel_{key}", "type": obj["type"]})
    return _obj(
        "dashboard",
        "amebo-overview",
        {
            "title": "Amebo overview",
            "description": "Events published, deliveries, errors and validation failures.",
            "panelsJSON": json.dumps(grid, sort_keys=True),
            "optionsJSON": json.dumps(
                {
                    "useMargins": True,
                    "syncColors": False,
                    "syncCursor": True,
                    "syncTooltips": False,
                    "hidePanelTitles": False,
                }
            ),
            "timeRestore": True,
            "timeFrom": "now-24h",
            "timeTo": "now",
            "refreshInterval": {"pause": False, "value": 60000},
            "kibanaSavedObjectMeta": {
                "searchSourceJSON": json.dumps({"query": {"query": "", "language": "kuery"}, "filter": []})
            },
        },
        refs,
    )


def objects() -> list[dict[str, Any]]:
    """The saved objects in import order: data views, searches, visualizations, dashboard."""
    vis = visualizations()
    found = searches()
    return [data_view(), failures_view(), *found, *vis, dashboard([*vis, found[0], found[2]])]


def ndjson() -> str:
    return "".join(json.dumps(o, sort_keys=True, separators=(",", ":")) + "\n" for o in objects())


def write_ndjson(path: Path = NDJSON) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(ndjson())
    return path


def import_objects(
    kibana_url: str,
    data: bytes,
    *,
    headers: dict[str, str],
    ca_certs: str | None = None,
    verify: bool = True,
    timeout: float = 60.0,
) -> dict[str, Any]:
    """POST *data* (NDJSON) to Kibana's saved objects import API with overwrite; its answer.

    Raises RuntimeError with Kibana's message when the import is refused or incomplete."""
    import urllib3

    boundary = "amebo-logship-boundary"
    body = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="amebo.ndjson"\r\n'
            "Content-Type: application/ndjson\r\n\r\n"
        ).encode()
        + data
        + f"\r\n--{boundary}--\r\n".encode()
    )
    pool = urllib3.PoolManager(
        cert_reqs="CERT_REQUIRED" if verify else "CERT_NONE",
        ca_certs=ca_certs,
        timeout=urllib3.Timeout(total=timeout),
        retries=False,
    )
    try:
        resp = pool.request(
            "POST",
            kibana_url.rstrip("/") + "/api/saved_objects/_import?overwrite=true",
            body=body,
            headers={**headers, "kbn-xsrf": "true", "Content-Type": f"multipart/form-data; boundary={boundary}"},
        )
    except urllib3.exceptions.HTTPError as exc:
        raise RuntimeError(f"cannot reach Kibana at {kibana_url}: {exc}") from None
    try:
        answer = json.loads(resp.data or b"{}")
    except ValueError:
        answer = {"message": resp.data[:200].decode(errors="replace")}
    if resp.status in (401, 403):
        raise PermissionError(f"Kibana refused the credentials (HTTP {resp.status}): {answer.get('message', '')}")
    if resp.status != 200 or not answer.get("success"):
        errors = answer.get("errors") or answer.get("message") or answer
        raise RuntimeError(f"Kibana did not import the saved objects (HTTP {resp.status}): {errors}")
    return answer
