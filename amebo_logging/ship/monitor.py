"""Prometheus metrics and ``/health`` for a running shipper.

The metrics are read from the shipper's own counters at scrape time: they observe every
stage and never steer one.  ``/health`` answers 200 while the shipper delivers, or is idle
and can reach Elasticsearch; 503 with the reason when Elasticsearch is unreachable, refuses
the credentials, or nothing was delivered for longer than the stall threshold while lines
wait.  When more than a threshold share of the documents settled in the last five minutes
went to the data stream's failure store, it answers 200 with ``"status": "degraded"`` and
the reason: the shipper works (restarting it would not help), the data or the mapping needs
a look.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any

import orjson
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector, CollectorRegistry

from .bulk import DURATION_BUCKETS, DeliveryStats
from .connection import ConnectionSettings, explain

if TYPE_CHECKING:
    from .shipper import Shipper

__all__ = ["METRIC_NAMES", "HealthCheck", "MonitorServer", "ShipperCollector"]

P = "amebo_logship_"

#: Every metric family this module exports (the alert rules' test checks against it).
METRIC_NAMES = (
    f"{P}lines_read_total",
    f"{P}documents_delivered_total",
    f"{P}duplicates_absorbed_total",
    f"{P}documents_dead_lettered_total",
    f"{P}failure_store_total",
    f"{P}parse_failures_total",
    f"{P}truncated_lines_total",
    f"{P}retries_total",
    f"{P}bulk_request_duration_seconds",
    f"{P}lag_bytes",
    f"{P}files_watched",
    f"{P}last_delivery_timestamp_seconds",
    f"{P}requests_in_flight",
    f"{P}concurrency_limit",
    f"{P}max_in_flight",
    f"{P}node_up",
)


class ShipperCollector(Collector):
    """Turns a shipper's counters into Prometheus metric families."""

    def __init__(self, shipper: Shipper) -> None:
        self.shipper = shipper

    def collect(self) -> Iterator[Any]:
        snap = self.shipper.snapshot()
        r, d = snap.read, snap.delivery
        for name, doc, value in (
            ("lines_read", "Complete lines read from the files.", r.lines),
            ("documents_delivered", "Documents Elasticsearch acknowledged (200/201).", d.delivered),
            ("duplicates_absorbed", "Documents already in Elasticsearch (409 on create): replays.", d.duplicates),
            (
                "documents_dead_lettered",
                "Documents refused for good, written to the dead-letter file.",
                d.dead_lettered,
            ),
            (
                "failure_store",
                (
                    "Documents Elasticsearch kept in the data stream's failure store instead of "
                    "indexing them (answered 201 with failure_store: used)."
                ),
                d.failure_store,
            ),
            ("parse_failures", "Lines that were not a JSON object (shipped with error.message).", r.parse_failures),
            ("truncated_lines", "Lines cut at --max-line-bytes.", r.truncated),
        ):
            yield CounterMetricFamily(f"{P}{name}", doc, value=value)
        retries = CounterMetricFamily(f"{P}retries", "Bulk requests or items retried, by cause.", labels=["cause"])
        for cause, count in sorted(d.retries.items()):
            retries.add_metric([cause], count)
        yield retries
        buckets, cumulative = [], 0
        for bound, count in zip(DURATION_BUCKETS, list(d.bulk_buckets), strict=True):
            cumulative += count
            buckets.append((repr(bound), cumulative))
        buckets.append(("+Inf", d.bulk_requests))
        yield HistogramMetricFamily(
            f"{P}bulk_request_duration_seconds",
            "Duration of bulk requests.",
            buckets=buckets,
            sum_value=d.bulk_seconds_sum,
        )
        lag = GaugeMetricFamily(f"{P}lag_bytes", "Bytes not yet shipped, per file.", labels=["file"])
        for f in snap.files:
            lag.add_metric([f.path], f.lag)
        yield lag
        yield GaugeMetricFamily(f"{P}files_watched", "Files open for reading.", value=len(snap.files))
        yield GaugeMetricFamily(f"{P}requests_in_flight", "Bulk requests sent and not answered.", value=snap.in_flight)
        yield GaugeMetricFamily(
            f"{P}concurrency_limit",
            "Bulk requests allowed in flight now, as learned from the cluster's round-trip times and push-back.",
            value=snap.concurrency_limit,
        )
        yield GaugeMetricFamily(
            f"{P}max_in_flight", "The most bulk requests allowed in flight (--max-in-flight).", value=snap.max_in_flight
        )
        nodes = GaugeMetricFamily(
            f"{P}node_up",
            "Whether the last request to this Elasticsearch node reached it (1) or not (0).",
            labels=["url"],
        )
        for node in snap.nodes:
            nodes.add_metric([node.url], 1.0 if node.up else 0.0)
        yield nodes
        yield GaugeMetricFamily(
            f"{P}last_delivery_timestamp_seconds",
            "Unix time of the last settled document (0 before the first).",
            value=d.last_delivery or 0.0,
        )


class HealthCheck:
    """Decides ``/health``: see the module docstring."""

    def __init__(
        self,
        shipper: Shipper,
        settings: ConnectionSettings,
        stall_seconds: float = 300.0,
        probe_every: float = 5.0,
        failure_store_percent: float = 1.0,
    ) -> None:
        self.shipper = shipper
        self.settings = settings
        self.stall_seconds = stall_seconds
        self.probe_every = probe_every
        self.failure_store_percent = failure_store_percent
        self._probe: tuple[float, str | None] = (0.0, None)  # (when, problem or None)
        self._lock = threading.Lock()
        # (time, documents indexed or already there, documents in the failure store), oldest first
        self._samples: deque[tuple[float, int, int]] = deque()

    #: The window over which the failure store's share is measured.
    WINDOW = 300.0

    def _failure_store_share(self, started_at: float, d: DeliveryStats) -> tuple[float, int] | None:
        """(percent, documents) of the documents settled in the last WINDOW seconds that went to
        the failure store, or None when none did."""
        now = time.time()
        with self._lock:
            samples = self._samples
            if not samples:
                samples.append((started_at, 0, 0))
            samples.append((now, d.delivered + d.duplicates, d.failure_store))
            while len(samples) > 2 and samples[1][0] <= now - self.WINDOW:
                samples.popleft()  # keep one sample at or before the window's start
            _, indexed0, stored0 = samples[0]
        stored = d.failure_store - stored0
        if stored <= 0:
            return None
        return 100.0 * stored / (stored + d.delivered + d.duplicates - indexed0), stored

    def _reachability(self, d: DeliveryStats) -> str | None:
        """A problem reaching Elasticsearch, or None; asks it when nothing answered lately."""
        now = time.time()
        failure = d.last_failure
        if failure is not None and (d.last_ok is None or failure[0] > d.last_ok):
            kind, reason = failure[1], failure[2]
            if kind == "auth":
                return f"Elasticsearch refused the credentials: {reason}"
            if kind == "connection":
                return f"Elasticsearch is unreachable: {reason}"
        if d.last_ok is not None and now - d.last_ok < self.probe_every:
            return None
        with self._lock:
            when, problem = self._probe
            if now - when < self.probe_every:
                return problem
            problem = self._ask()
            self._probe = (time.time(), problem)
            return problem

    def _ask(self) -> str | None:
        """Ask the nodes in turn (a short timeout each): any that answers will do."""
        from dataclasses import replace

        from .checks import live_cluster

        found = live_cluster(replace(self.settings, request_timeout=min(5.0, self.probe_every)))
        found.node.close()
        meaning = explain(found.answer, found.settings)
        return None if meaning.ok else meaning.message

    def status(self) -> tuple[int, dict[str, Any]]:
        snap = self.shipper.snapshot()
        d = snap.delivery
        # A last line still waiting for its newline is lag, but nothing can be delivered of it.
        deliverable = snap.deliverable_bytes
        body: dict[str, Any] = {
            "lag_bytes": snap.lag_bytes,
            "files_watched": len(snap.files),
            "delivered": d.delivered,
            "dead_lettered": d.dead_lettered,
            "failure_store": d.failure_store,
            "last_delivery": datetime.fromtimestamp(d.last_delivery, UTC).isoformat() if d.last_delivery else None,
            "requests_in_flight": snap.in_flight,
            "concurrency_limit": snap.concurrency_limit,
        }
        down = [n.url for n in snap.nodes if not n.up]
        if down:
            body["nodes_down"] = down
        problem = self._reachability(d)
        if problem is None and deliverable > 0:
            since = time.time() - (d.last_delivery or snap.started_at)
            if since > self.stall_seconds:
                problem = f"nothing delivered for {since:.0f}s while {deliverable} bytes wait"
        if problem is not None:
            return 503, {"status": "unavailable", "reason": problem, **body}
        share = self._failure_store_share(snap.started_at, d)
        if share is not None and share[0] > self.failure_store_percent:
            percent, stored = share
            target = self.shipper.options.target
            return 200, {
                "status": "degraded",
                "reason": f"{percent:.1f}% of the documents of the last {self.WINDOW / 60:.0f} minutes ({stored}) "
                f"went to the failure store: Elasticsearch could not index them; see FROM {target}::failures",
                **body,
            }
        return 200, {"status": "ok", **body}


class MonitorServer:
    """Serves ``/metrics`` and ``/health`` on *host*:*port* in a daemon thread."""

    def __init__(
        self,
        shipper: Shipper,
        settings: ConnectionSettings,
        host: str,
        port: int,
        stall_seconds: float = 300.0,
        failure_store_percent: float = 1.0,
    ) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(ShipperCollector(shipper))
        self.health = HealthCheck(shipper, settings, stall_seconds, failure_store_percent=failure_store_percent)
        registry, health = self.registry, self.health

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib's name
                pass

            def do_GET(self) -> None:
                path = self.path.split("?", 1)[0]
                if path == "/metrics":
                    status, body, ctype = 200, generate_latest(registry), CONTENT_TYPE_LATEST
                elif path in ("/health", "/healthz"):
                    status, doc = health.status()
                    body, ctype = orjson.dumps(doc), "application/json"
                else:
                    status, body, ctype = 404, b'{"error":"try /metrics or /health"}', "application/json"
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.server = ThreadingHTTPServer((host, port), Handler)
        self.server.daemon_threads = True
        self.address = self.server.server_address
        self.thread = threading.Thread(target=self.server.serve_forever, name="amebo-logship-monitor", daemon=True)

    def start(self) -> MonitorServer:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
