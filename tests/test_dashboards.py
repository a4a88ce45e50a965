"""The Grafana dashboards: generated from grafana/dashboards.py (no drift), valid for
Grafana's dashboard schema (they round-trip through the SDK's typed models), provisioned as
compose mounts them, and naming only series that are exported."""

from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path

import yaml

from amebo_logging import metrics

ROOT = Path(__file__).resolve().parent.parent


def generator():
    spec = importlib.util.spec_from_file_location("amebo_grafana_dashboards", ROOT / "grafana" / "dashboards.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def exprs(dashboard: dict) -> list[str]:
    return [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]


def test_the_committed_dashboards_are_what_the_generator_builds():
    gen = generator()
    files = sorted(p.name for p in (ROOT / "grafana" / "dashboards").glob("*.json"))
    assert files == sorted(gen.DASHBOARDS)
    for name, build in gen.DASHBOARDS.items():
        committed = (ROOT / "grafana" / "dashboards" / name).read_text()
        assert committed == gen.render(build), f"{name} drifted: run python grafana/dashboards.py"


def _without_empty_custom(value):
    """The typed model adds ``fieldConfig.defaults.custom: {}`` to panels: the same for Grafana."""
    if isinstance(value, dict):
        return {k: _without_empty_custom(v) for k, v in value.items() if not (k == "custom" and v == {})}
    if isinstance(value, list):
        return [_without_empty_custom(v) for v in value]
    return value


def test_each_dashboard_fits_grafanas_schema():
    from grafana_foundation_sdk.cog.encoder import JSONEncoder
    from grafana_foundation_sdk.cog.plugins import register_default_plugins
    from grafana_foundation_sdk.models.dashboard import Dashboard

    register_default_plugins()
    for path in (ROOT / "grafana" / "dashboards").glob("*.json"):
        data = json.loads(path.read_text())
        model = Dashboard.from_json(data)  # the typed model: unknown panel kinds or fields fail
        back = json.loads(JSONEncoder(sort_keys=True).encode(model))
        assert _without_empty_custom(back) == data, path.name  # nothing lost or changed
        assert data["uid"] and data["title"].startswith("Amebo: ") and data["panels"]
        for panel in data["panels"]:
            assert panel["type"] in ("row", "stat", "timeseries")
            if panel["type"] != "row":
                assert panel["datasource"] == {"type": "prometheus", "uid": "prometheus"} and panel["targets"]


def test_every_series_a_panel_names_is_exported():
    gen = generator()
    known = set(metrics.METRIC_NAMES) | set(metrics.AMEBO_SERIES) | set(gen.NODE_SERIES)
    functions = {"sum", "rate", "max", "min", "avg", "histogram_quantile", "by", "le"}
    for path in (ROOT / "grafana" / "dashboards").glob("*.json"):
        for expr in exprs(json.loads(path.read_text())):
            bare = re.sub(r"\{[^}]*\}|\[[^\]]*\]|\"[^\"]*\"", "", expr)
            for name in re.findall(r"\b[a-z_][a-z0-9_]*\b", bare):
                if name in functions or name in {"http_route", "kind", "status", "quantile", "instance", "application"}:
                    continue
                if name in {"action", "outcome", "final", "function", "http_response_status_code", "mountpoint"}:
                    continue
                base = re.sub(r"_(bucket|count|sum)$", "", name)
                assert name in known or base in known, f"{name} in {path.name}: {expr}"


def test_provisioning_matches_the_dashboards_and_the_compose_mounts():
    gen = generator()
    datasource = yaml.safe_load((ROOT / "grafana/provisioning/datasources/prometheus.yml").read_text())
    [ds] = datasource["datasources"]
    assert {"type": ds["type"], "uid": ds["uid"]} == gen.DATASOURCE and ds["url"] == "http://prometheus:9090"
    providers = yaml.safe_load((ROOT / "grafana/provisioning/dashboards/amebo.yml").read_text())["providers"]
    compose = yaml.safe_load((ROOT / "docker-compose.elk.yml").read_text())["services"]
    mounts = dict(v.split(":")[:2][::-1] for v in compose["grafana"]["volumes"] if v.startswith("./"))
    assert mounts[providers[0]["options"]["path"]] == "./grafana/dashboards"
    assert mounts["/etc/grafana/provisioning"] == "./grafana/provisioning"
    for name in ("prometheus", "alertmanager", "grafana"):
        assert all(p.startswith("127.0.0.1:") for p in compose[name]["ports"]), name
