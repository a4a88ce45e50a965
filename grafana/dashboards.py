"""Amebo's four Grafana dashboards, as code: ``python grafana/dashboards.py`` writes
``grafana/dashboards/*.json`` (a test fails when they drift from this file).

Built with Grafana's typed builders (``grafana-foundation-sdk``, pinned in the test extra:
its versions carry an epoch prefix), so a dashboard that does not fit Grafana's schema does
not build.  The dashboards follow Amebo's monitoring guide:

* **Amebo: application overview**: request rate, response time p50/p95/p99, error rate,
  event processing rate, webhook delivery success rate;
* **Amebo: database**: Amebo's own database snapshots (its ``/metrics`` series);
* **Amebo: system resources**: node-exporter's standard series (CPU, memory, disk, network);
* **Amebo: business metrics**: events per application, validation failures, deliveries by
  outcome, delivery latency.

Every series a panel names is exported by ``amebo_logging.metrics``, by Amebo itself
(``AMEBO_SERIES``) or by node-exporter (``NODE_SERIES``): the tests check it, and run each
query against a real Prometheus.
"""

from __future__ import annotations

import sys
from pathlib import Path

from grafana_foundation_sdk.builders.dashboard import Dashboard as DashboardBuilder
from grafana_foundation_sdk.builders.dashboard import Row
from grafana_foundation_sdk.builders.prometheus import Dataquery
from grafana_foundation_sdk.builders.stat import Panel as Stat
from grafana_foundation_sdk.builders.timeseries import Panel as Timeseries
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models.dashboard import DataSourceRef

HERE = Path(__file__).resolve().parent
OUT = HERE / "dashboards"
DATASOURCE = {"type": "prometheus", "uid": "prometheus"}  # provisioning/datasources/prometheus.yml

#: node-exporter's standard series the system dashboard uses.
NODE_SERIES = (
    "node_cpu_seconds_total",
    "node_load1",
    "node_memory_MemAvailable_bytes",
    "node_memory_MemTotal_bytes",
    "node_filesystem_avail_bytes",
    "node_filesystem_size_bytes",
    "node_network_receive_bytes_total",
    "node_network_transmit_bytes_total",
    "node_disk_io_time_seconds_total",
)


def query(expr: str, legend: str = "", ref: str = "A") -> Dataquery:
    q = Dataquery().expr(expr).ref_id(ref).datasource(_ds())
    return q.legend_format(legend) if legend else q


def _ds() -> DataSourceRef:  # a new reference each time: builders are values
    return DataSourceRef(type_val=DATASOURCE["type"], uid=DATASOURCE["uid"])


def graph(title: str, unit: str, *queries: Dataquery, width: int = 12) -> Timeseries:
    panel = Timeseries().title(title).unit(unit).datasource(_ds()).height(8).span(width)
    for q in queries:
        panel = panel.with_target(q)
    return panel


def stat(title: str, unit: str, expr: str, width: int = 6) -> Stat:
    return Stat().title(title).unit(unit).datasource(_ds()).height(4).span(width).with_target(query(expr))


def dashboard(uid: str, title: str, description: str) -> DashboardBuilder:
    return (
        DashboardBuilder(title)
        .uid(uid)
        .description(description)
        .tags(["amebo", "generated"])
        .refresh("30s")
        .time("now-1h", "now")
        .timezone("browser")
        .editable()
    )


RATE = "$__rate_interval"


def application_overview() -> DashboardBuilder:
    http = "http_server_request_duration_seconds"
    return (
        dashboard("amebo-overview", "Amebo: application overview", "Requests, latency, errors and throughput.")
        .with_row(Row("Now"))
        .with_panel(stat("Requests/s", "reqps", f"sum(rate({http}_count[{RATE}]))"))
        .with_panel(
            stat(
                "Error ratio (5xx)",
                "percentunit",
                f'sum(rate({http}_count{{http_response_status_code=~"5.."}}[{RATE}]))'
                f" / sum(rate({http}_count[{RATE}]))",
            )
        )
        .with_panel(stat("Events published/s", "ops", f"sum(rate(amebo_events_published_total[{RATE}]))"))
        .with_panel(
            stat(
                "Webhook success ratio",
                "percentunit",
                f'sum(rate(amebo_webhook_deliveries_total{{outcome="delivered"}}[{RATE}]))'
                f" / sum(rate(amebo_webhook_deliveries_total[{RATE}]))",
            )
        )
        .with_row(Row("Requests"))
        .with_panel(
            graph(
                "Request rate by route",
                "reqps",
                query(f"sum by (http_route) (rate({http}_count[{RATE}]))", "{{http_route}}"),
            )
        )
        .with_panel(
            graph(
                "Response time",
                "s",
                *(
                    query(
                        f"histogram_quantile({q}, sum by (le) (rate({http}_bucket[{RATE}])))", f"p{int(q * 100)}", ref
                    )
                    for q, ref in ((0.5, "A"), (0.95, "B"), (0.99, "C"))
                ),
            )
        )
        .with_panel(
            graph("Errors by kind", "ops", query(f"sum by (kind) (rate(amebo_errors_total[{RATE}]))", "{{kind}}"))
        )
        .with_panel(
            graph(
                "Answers by status",
                "reqps",
                query(
                    f"sum by (http_response_status_code) (rate({http}_count[{RATE}]))", "{{http_response_status_code}}"
                ),
            )
        )
    )


def database() -> DashboardBuilder:
    return (
        dashboard("amebo-database", "Amebo: database", "Amebo's own database snapshots, per scrape.")
        .with_row(Row("Ledger"))
        .with_panel(stat("Amebo up", "none", "min(amebo_up)"))
        .with_panel(stat("Events in the ledger", "short", "max(amebo_events_published)"))
        .with_panel(stat("Active subscriptions", "short", "max(amebo_subscriptions_active)"))
        .with_panel(stat("Applications", "short", "max(amebo_applications)"))
        .with_row(Row("Deliveries"))
        .with_panel(graph("Gists by state", "short", query("max by (status) (amebo_gists)", "{{status}}")))
        .with_panel(graph("Actions by status", "short", query("max by (status) (amebo_actions)", "{{status}}")))
        .with_panel(
            graph(
                "Delivery attempts recorded/s",
                "ops",
                query(f"max(rate(amebo_delivery_attempts_total[{RATE}]))", "all", "A"),
                query(f"max(rate(amebo_delivery_attempts_ok_total[{RATE}]))", "ok", "B"),
            )
        )
        .with_panel(
            graph(
                "Delivery latency (Amebo's 5-minute window)",
                "ms",
                query("max by (quantile) (amebo_delivery_latency_ms)", "q{{quantile}}"),
            )
        )
    )


def system_resources() -> DashboardBuilder:
    return (
        dashboard("amebo-system", "Amebo: system resources", "The host, from node-exporter's standard series.")
        .with_row(Row("Host"))
        .with_panel(
            graph(
                "CPU busy",
                "percentunit",
                query(f'1 - avg by (instance) (rate(node_cpu_seconds_total{{mode="idle"}}[{RATE}]))', "{{instance}}"),
            )
        )
        .with_panel(graph("Load (1m)", "short", query("node_load1", "{{instance}}")))
        .with_panel(
            graph(
                "Memory used",
                "percentunit",
                query("1 - node_memory_MemAvailable_bytes / node_memory_MemTotal_bytes", "{{instance}}"),
            )
        )
        .with_panel(
            graph(
                "Disk used",
                "percentunit",
                query(
                    '1 - node_filesystem_avail_bytes{fstype!~"tmpfs|overlay"}'
                    ' / node_filesystem_size_bytes{fstype!~"tmpfs|overlay"}',
                    "{{instance}} {{mountpoint}}",
                ),
            )
        )
        .with_panel(
            graph(
                "Network",
                "Bps",
                query(f'sum by (instance) (rate(node_network_receive_bytes_total{{device!="lo"}}[{RATE}]))', "in", "A"),
                query(
                    f'sum by (instance) (rate(node_network_transmit_bytes_total{{device!="lo"}}[{RATE}]))', "out", "B"
                ),
            )
        )
        .with_panel(
            graph("Disk busy", "percentunit", query(f"rate(node_disk_io_time_seconds_total[{RATE}])", "{{device}}"))
        )
    )


def business_metrics() -> DashboardBuilder:
    return (
        dashboard("amebo-business", "Amebo: business metrics", "What Amebo does for the applications it serves.")
        .with_row(Row("Events"))
        .with_panel(
            graph(
                "Events published by application",
                "ops",
                query(f"sum by (application) (rate(amebo_events_published_total[{RATE}]))", "{{application}}"),
            )
        )
        .with_panel(
            graph(
                "Schema validation failures by action",
                "ops",
                query(f"sum by (action) (rate(amebo_schema_validation_failures_total[{RATE}]))", "{{action}}"),
            )
        )
        .with_row(Row("Webhooks"))
        .with_panel(
            graph(
                "Deliveries by outcome",
                "ops",
                query(
                    f"sum by (outcome, final) (rate(amebo_webhook_deliveries_total[{RATE}]))",
                    "{{outcome}} final={{final}}",
                ),
            )
        )
        .with_panel(
            graph(
                "Delivery latency",
                "s",
                query(
                    "histogram_quantile(0.95, sum by (le) "
                    f"(rate(amebo_webhook_delivery_duration_seconds_bucket[{RATE}])))",
                    "p95",
                ),
            )
        )
        .with_panel(
            graph(
                "Operators' functions (monitor_performance), p95",
                "s",
                query(
                    "histogram_quantile(0.95, sum by (le, function) "
                    f"(rate(amebo_function_duration_seconds_bucket[{RATE}])))",
                    "{{function}}",
                ),
            )
        )
    )


DASHBOARDS = {
    "amebo-overview.json": application_overview,
    "amebo-database.json": database,
    "amebo-system.json": system_resources,
    "amebo-business.json": business_metrics,
}


def render(build) -> str:
    return JSONEncoder(sort_keys=True, indent=2).encode(build().build()) + "\n"


def main() -> int:
    OUT.mkdir(exist_ok=True)
    for name, build in DASHBOARDS.items():
        (OUT / name).write_text(render(build))
    print(f"wrote {len(DASHBOARDS)} dashboards to {OUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
