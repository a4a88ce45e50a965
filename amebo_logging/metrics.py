"""Amebo's Prometheus series, counted at the integration's seams and summed across workers.

Amebo 0.9 serves ``/metrics`` itself with database snapshots (gauges, a five-minute latency
summary).  The integration counts what it already sees at every seam, with
``prometheus-client``, and appends its series to Amebo's body on the same port:

* ``http_server_request_duration_seconds`` (histogram): every request, probes included, by
  ``http_request_method``, ``http_route`` (the route template, ``/v1/events/:event``, never
  the raw path; ``unmatched`` for none) and ``http_response_status_code``: OpenTelemetry's
  HTTP server metric, in Prometheus's names;
* ``amebo_events_published_total`` and ``amebo_schema_validation_failures_total``, by
  ``application`` and ``action``;
* ``amebo_webhook_deliveries_total`` by ``outcome`` (``delivered``, ``failed``) and ``final``
  (``true`` for an attempt after which Amebo gives up or succeeds), and
  ``amebo_webhook_delivery_duration_seconds`` (histogram);
* ``amebo_errors_total`` by ``kind`` (``http_5xx``: answers of 500 and above; ``unhandled``:
  exceptions the application raised), each present from 0 so ``rate()`` has a series before
  the first error;
* ``amebo_function_duration_seconds`` by ``function``, from :func:`monitor_performance`.

Label values are bounded: an ``application`` or ``action`` is kept when it is 1-64
characters of ``[A-Za-z0-9._:-]`` and among the first :data:`MAX_LABEL_VALUES` seen by the
process, else counted as ``other``; methods outside the standard nine are ``_OTHER``.

**Several workers** (gunicorn): each worker counts in its own files under
``PROMETHEUS_MULTIPROC_DIR`` (prometheus-client's multiprocess mode), and a scrape answered
by any worker sums them all; the packaged gunicorn config sets the directory up, wipes it at
start and marks a dead worker's files, so its counts stay in the totals.  The variable must
be set before ``prometheus_client`` is first imported.
"""

from __future__ import annotations

import asyncio
import functools
import os
import re
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any, Final, TypeVar

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest, multiprocess

__all__ = [
    "AMEBO_SERIES",
    "MAX_LABEL_VALUES",
    "METRIC_NAMES",
    "MetricsMiddleware",
    "RouteTemplates",
    "exposition",
    "monitor_performance",
]

#: Distinct values per label (application, action, function) one process keeps.
MAX_LABEL_VALUES: Final = 100
_LABEL_VALUE: Final = re.compile(r"[A-Za-z0-9._:-]{1,64}")
_METHODS: Final = frozenset({"CONNECT", "DELETE", "GET", "HEAD", "OPTIONS", "PATCH", "POST", "PUT", "TRACE"})
#: OpenTelemetry's advice for http.server.request.duration, in seconds.
HTTP_BUCKETS: Final = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0)
DELIVERY_BUCKETS: Final = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
ERROR_KINDS: Final = ("http_5xx", "unhandled")

#: Every metric family this module exports (the rules' and dashboards' tests check against it).
METRIC_NAMES: Final = (
    "http_server_request_duration_seconds",
    "amebo_events_published_total",
    "amebo_schema_validation_failures_total",
    "amebo_webhook_deliveries_total",
    "amebo_webhook_delivery_duration_seconds",
    "amebo_errors_total",
    "amebo_function_duration_seconds",
)

#: Amebo 0.9's own series on its /metrics (database snapshots), which ours are appended to:
#: the dashboards may name these too (a test checks Amebo still serves every one).
AMEBO_SERIES: Final = (
    "amebo_up",
    "amebo_gists",
    "amebo_gists_total",
    "amebo_delivery_success_rate",
    "amebo_events_published",
    "amebo_subscriptions_active",
    "amebo_applications",
    "amebo_actions",
    "amebo_delivery_attempts_total",
    "amebo_delivery_attempts_ok_total",
    "amebo_delivery_latency_ms",
)

_registry = CollectorRegistry(auto_describe=True)
HTTP_DURATION = Histogram(
    "http_server_request_duration_seconds",
    "Duration of HTTP server requests (OpenTelemetry http.server.request.duration).",
    ["http_request_method", "http_route", "http_response_status_code"],
    buckets=HTTP_BUCKETS,
    registry=_registry,
)
EVENTS_PUBLISHED = Counter(
    "amebo_events_published", "Events Amebo accepted.", ["application", "action"], registry=_registry
)
VALIDATION_FAILURES = Counter(
    "amebo_schema_validation_failures",
    "Publishes refused by the action's JSON Schema.",
    ["application", "action"],
    registry=_registry,
)
DELIVERIES = Counter(
    "amebo_webhook_deliveries",
    "Webhook delivery attempts by outcome; final is true when no attempt follows.",
    ["outcome", "final"],
    registry=_registry,
)
DELIVERY_DURATION = Histogram(
    "amebo_webhook_delivery_duration_seconds",
    "Duration of webhook delivery attempts.",
    buckets=DELIVERY_BUCKETS,
    registry=_registry,
)
ERRORS = Counter("amebo_errors", "Errors: 5xx answers and unhandled exceptions.", ["kind"], registry=_registry)
FUNCTION_DURATION = Histogram(
    "amebo_function_duration_seconds",
    "Duration of functions wrapped with monitor_performance.",
    ["function"],
    registry=_registry,
)
for _kind in ERROR_KINDS:
    ERRORS.labels(_kind)
for _outcome in ("delivered", "failed"):
    for _final in ("true", "false"):
        DELIVERIES.labels(_outcome, _final)


class _Bounded:
    """The label values one process has admitted: at most MAX_LABEL_VALUES, else "other"."""

    def __init__(self, valid: re.Pattern[str] = _LABEL_VALUE) -> None:
        self._valid = valid
        self._seen: set[str] = set()
        self._lock = threading.Lock()

    def __call__(self, value: Any) -> str:
        text = str(value or "")
        if text in self._seen:
            return text
        if not self._valid.fullmatch(text):
            return "other"
        with self._lock:
            if len(self._seen) >= MAX_LABEL_VALUES:
                return "other"
            self._seen.add(text)
        return text


_applications, _actions = _Bounded(), _Bounded()
_functions = _Bounded(re.compile(r"[^\s\"\\]{1,128}"))


def method_label(method: str) -> str:
    upper = method.upper()
    return upper if upper in _METHODS else "_OTHER"


def count_published(application: str, action: str) -> None:
    EVENTS_PUBLISHED.labels(_applications(application), _actions(action)).inc()


def count_validation_failure(application: str, action: str) -> None:
    VALIDATION_FAILURES.labels(_applications(application), _actions(action)).inc()


def count_delivery(delivered: bool, final: bool, seconds: float | None) -> None:
    DELIVERIES.labels("delivered" if delivered else "failed", "true" if final else "false").inc()
    if seconds is not None:
        DELIVERY_DURATION.observe(seconds)


def count_error(kind: str) -> None:
    ERRORS.labels(kind).inc()


def observe_request(method: str, route: str, status: int, seconds: float) -> None:
    HTTP_DURATION.labels(method_label(method), route, str(status)).observe(seconds)
    if status >= 500:
        ERRORS.labels("http_5xx").inc()


class RouteTemplates:
    """Request paths to the route templates they matched (``/v1/events/abc`` ->
    ``/v1/events/:event``), from (method, template) pairs such as heaven's route table."""

    def __init__(self, routes: Iterable[tuple[str, str]]) -> None:
        by_method: dict[str, list[tuple[int, re.Pattern[str], str]]] = {}
        for method, template in routes:
            parts = []
            literal = 0
            for segment in template.strip("/").split("/"):
                if segment.startswith(":"):
                    parts.append("[^/]+")
                elif segment == "*":
                    parts.append(".*")
                else:
                    parts.append(re.escape(segment))
                    literal += 1
            pattern = re.compile("/" + "/".join(parts) if template != "/" else "/")
            by_method.setdefault(method.upper(), []).append((-literal, pattern, template))
        self._routes = {m: sorted(entries, key=lambda e: (e[0], e[2])) for m, entries in by_method.items()}
        self.template = functools.lru_cache(maxsize=4096)(self._template)

    def _template(self, method: str, path: str) -> str:
        method = "GET" if method.upper() == "HEAD" else method.upper()
        for _, pattern, template in self._routes.get(method, ()):
            if pattern.fullmatch(path.rstrip("/") or "/"):
                return template
        return "unmatched"


def exposition() -> bytes:
    """This process's series, or every worker's summed in multiprocess mode, in Prometheus's
    text format 0.0.4."""
    path = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if not path:
        return generate_latest(_registry)
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry, path=path)
    return generate_latest(registry)


class MetricsMiddleware:
    """ASGI middleware: every HTTP request into ``http_server_request_duration_seconds`` (and
    5xx answers and exceptions into ``amebo_errors_total``), and this module's series appended
    to the body the app answers ``GET /metrics`` with (or served alone when the app has none)."""

    def __init__(self, app: Any, routes: RouteTemplates | None = None, metrics_path: str = "/metrics") -> None:
        self.app = app
        self.routes = routes
        self.metrics_path = metrics_path

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        method, path = scope.get("method", "GET"), scope.get("path", "/")
        route = self.routes.template(method, path) if self.routes is not None else "unmatched"
        started = time.perf_counter()
        status = [500]
        scrape = path == self.metrics_path and method in ("GET", "HEAD")
        held: list[Any] = []

        async def observed_send(message: Any) -> None:
            if message["type"] == "http.response.start":
                status[0] = int(message["status"])
            if not scrape:
                await send(message)
                return
            held.append(message)
            if message["type"] == "http.response.body" and not message.get("more_body"):
                await _send_with_ours(send, held, method == "HEAD")

        try:
            await self.app(scope, receive, observed_send)
        except Exception:
            ERRORS.labels("unhandled").inc()
            raise
        finally:
            observe_request(method, route, status[0], time.perf_counter() - started)


async def _send_with_ours(send: Any, held: list[Any], head: bool) -> None:
    """The app's /metrics answer with our series after its own (a 404 replaced by ours)."""
    start = held[0]
    body = b"".join(m.get("body", b"") for m in held[1:])
    if start["status"] == 404:
        body, status = b"", 200
    else:
        status = start["status"]
    if body and not body.endswith(b"\n"):
        body += b"\n"
    body += exposition()
    headers = [(k, v) for k, v in start.get("headers", []) if k.lower() not in (b"content-length", b"content-type")]
    headers += [
        (b"content-type", b"text/plain; version=0.0.4; charset=utf-8"),
        (b"content-length", str(len(body)).encode()),
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": b"" if head else body})


F = TypeVar("F", bound=Callable[..., Any])


def monitor_performance(function: F | None = None, *, name: str | None = None) -> Any:
    """Time each call of a function, sync or async, into ``amebo_function_duration_seconds``
    (label ``function``: *name*, else the function's qualified name; bounded like every
    label).  Exceptions are timed too, and pass through::

        @monitor_performance
        async def settle(order): ...

        @monitor_performance(name="reports.build")
        def build(): ...
    """

    def wrap(fn: F) -> F:
        label = _functions(name or f"{fn.__module__}.{fn.__qualname__}")
        histogram = FUNCTION_DURATION.labels(label)
        if asyncio.iscoroutinefunction(fn):

            @functools.wraps(fn)
            async def timed_async(*args: Any, **kwargs: Any) -> Any:
                started = time.perf_counter()
                try:
                    return await fn(*args, **kwargs)
                finally:
                    histogram.observe(time.perf_counter() - started)

            return timed_async  # type: ignore[return-value]

        @functools.wraps(fn)
        def timed(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                histogram.observe(time.perf_counter() - started)

        return timed  # type: ignore[return-value]

    return wrap(function) if function is not None else wrap
