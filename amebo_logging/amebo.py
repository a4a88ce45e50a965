"""Amebo 0.9, instrumented: every event structured, deduplicated and linked end to end.

The one-line change for an Amebo operator::

    uvicorn amebo.router:router            # before
    uvicorn amebo_logging.amebo:app        # after: same port and options

(or ``python -m amebo_logging.amebo``, on Amebo's port 3310).  With several workers, serve it
with the packaged gunicorn config, so no record is torn on the stdout they share::

    gunicorn -c python:amebo_logging.gunicorn -w 3 amebo_logging.amebo:app

For an app you assemble yourself, call
:func:`instrument` and wrap Amebo's router in
``CorrelationMiddleware(router, share_with_app=True)``.

Like OpenTelemetry's instrumentations, this wraps a library it does not own at its seams,
and only versions it was tested with (Amebo 0.9.x on heaven 2.x); on any other version it
logs one warning and stays passive: Amebo is never broken by it.

What it adds:

* **The catalog, written for real**: ``event_published`` per accepted publish,
  ``schema_validation_failed`` per rejected one (Amebo's ``services.broker.publish``), and
  ``webhook_delivered`` / ``webhook_failed`` per delivery attempt (the deliverer's
  ``aproko.attempt``, used by the daemon and by replays).
* **One request, one access record**: :class:`~amebo_logging.CorrelationMiddleware` writes it;
  Amebo's own access hook and ``uvicorn.access`` no longer add copies.
* **Linked by trace.id**: a request without ``traceparent`` starts a trace before Amebo sees
  it, so Amebo stores it with the event; each delivery's records carry the event's trace and
  the span Amebo puts in the ``traceparent`` it sends, plus ``X-Request-ID``.
* **Every line a record**: heaven's ``print()`` output (start-up hooks, daemons, ``[HEAVEN 500]``
  with its traceback) becomes records of logger ``heaven``.
* **Order-independent**: Amebo's own ``configure_logging()``, called before or after
  :func:`instrument`, cannot undo it.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import threading
import time
from contextvars import ContextVar
from importlib.metadata import PackageNotFoundError, version
from typing import Any, Final

import orjson

from . import events, metrics
from .asgi import CorrelationMiddleware
from .config import configure_logging
from .correlation import (
    TraceContext,
    correlation_scope,
    get_correlation_id,
    get_trace_context,
    new_correlation_id,
    set_trace_context,
)
from .health import HealthRoutes, daemon_cycled
from .logger import get_logger

__all__ = ["TESTED_AMEBO", "TESTED_HEAVEN", "app", "instrument", "instrumented", "main", "wrap_router"]  # noqa: F822 - app is lazy

#: Amebo and heaven releases the integration was tested with (major.minor).
TESTED_AMEBO: Final = ("0.9",)
TESTED_HEAVEN: Final = ("2.4",)

_lock = threading.RLock()
_state: dict[str, Any] = {"active": None, "settings": {}}
_OWNERS: dict[str, tuple[float, str]] = {}  # action -> (when looked up, owning application)
_OWNER_TTL: Final = 60.0

_log = logging.getLogger("amebo_logging.amebo")


def _version_of(package: str) -> str | None:
    try:
        return version(package)
    except PackageNotFoundError:
        return None


def _tested(found: str | None, tested: tuple[str, ...]) -> bool:
    return found is not None and any(found == t or found.startswith(t + ".") for t in tested)


def instrumented() -> bool:
    """Whether :func:`instrument` is active in this process."""
    return bool(_state["active"])


def instrument(**logging_options: Any) -> bool:
    """Wire Amebo's logging, catalog records and trace links; returns True when active.

    *logging_options* are :func:`amebo_logging.configure_logging`'s (``service_name`` defaults
    to ``amebo``, ``service_version`` to Amebo's version).  Idempotent: a second call only
    re-applies the logging configuration.  On an Amebo or heaven version this was not tested
    with, logging is still configured, one warning says so, and nothing of Amebo is touched.
    """
    with _lock:
        amebo_version = _version_of("amebo")
        logging_options.setdefault("service_name", "amebo")
        if logging_options["service_name"] == "amebo":
            logging_options.setdefault("service_version", amebo_version or "unknown")
        _state["settings"] = dict(logging_options)
        if _state["active"] is not None:
            _apply_logging()
            return bool(_state["active"])
        heaven_version = _version_of("heaven")
        if not (_tested(amebo_version, TESTED_AMEBO) and _tested(heaven_version, TESTED_HEAVEN)):
            _apply_logging()
            _state["active"] = False
            get_logger("amebo_logging.amebo").warning(
                "amebo_not_instrumented",
                amebo_version=amebo_version,
                heaven_version=heaven_version,
                reason=f"tested with Amebo {', '.join(TESTED_AMEBO)}.x and heaven {', '.join(TESTED_HEAVEN)}.x: "
                "records are structured, but the catalog records and trace links are off",
            )
            return False
        _patch_amebo_logging()  # before amebo.router is imported: it configures at import
        _apply_logging()
        import amebo.router  # its import-time configure_logging() now re-applies ours

        _patch_publish()
        _patch_deliveries()
        _patch_heaven()
        # last of Amebo's shutdown hooks, once its database and HTTP client are closed
        amebo.router.router.ON("shutdown", end_deliveries)
        _state["active"] = True
        return True


# --- logging, kept in force ------------------------------------------------------------------


class _DropAccessCopies(logging.Filter):
    """Amebo's own access hook: CorrelationMiddleware writes the one access record."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not hasattr(record, "status")


class _DropDeliveryCopies(logging.Filter):
    """aproko's "Delivery failed for ..." text: ``webhook_failed`` carries it, structured."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("Delivery failed for")


def _apply_logging() -> None:
    configure_logging(**_state["settings"])
    if _state["active"] is False:
        return
    # One request, one access record: uvicorn does not even build its access records when
    # its logger has nowhere to send them.
    uvicorn_access = logging.getLogger("uvicorn.access")
    uvicorn_access.handlers = []
    uvicorn_access.propagate = False
    _add_filter(logging.getLogger("amebo.access"), _DropAccessCopies)
    _add_filter(logging.getLogger("amebo.aproko"), _DropDeliveryCopies)
    # httpx's "HTTP Request: POST ..." lines: every delivery is a webhook_* record instead.
    logging.getLogger("httpx").setLevel(logging.WARNING)


def _add_filter(logger: logging.Logger, kind: type[logging.Filter]) -> None:
    if not any(isinstance(f, kind) for f in logger.filters):
        logger.addFilter(kind())


def _patch_amebo_logging() -> None:
    """Amebo's ``configure_logging()`` re-applies ours instead of replacing it, whenever it
    is called (``amebo.router`` calls it at import)."""
    import amebo.utils.logs as amebo_logs

    def configure_amebo_logging(*_args: Any, **_kwargs: Any) -> None:
        _apply_logging()

    configure_amebo_logging.__wrapped__ = amebo_logs.configure_logging  # type: ignore[attr-defined]
    amebo_logs.configure_logging = configure_amebo_logging
    router: Any = sys.modules.get("amebo.router")
    if router is not None and hasattr(router, "configure_logging"):
        router.configure_logging = configure_amebo_logging


# --- publishing: event_published, schema_validation_failed ------------------------------------


async def _owner(executor: Any, action: str) -> str:
    """The application that owns *action* (cached for a minute)."""
    now = time.monotonic()
    cached = _OWNERS.get(action)
    if cached is not None and now - cached[0] < _OWNER_TTL:
        return cached[1]
    try:
        owner = await executor.scalar("SELECT application FROM {x}actions WHERE action = ?", action)
    except Exception:
        owner = None
    owner = str(owner) if owner else "unknown"
    if len(_OWNERS) > 4096:
        _OWNERS.clear()
    _OWNERS[action] = (now, owner)
    return owner


async def _validation_errors(executor: Any, action: str, payload: Any, amebo_errors: Any) -> list[Any]:
    """The payload's violations as ``jsonschema`` errors, so the record says where and why and
    never the value: Amebo's own messages quote the rejected values (``'s3cr3t' is too
    long``).  Amebo's strings, reduced to their paths, when the schema cannot be read."""
    try:
        from jsonschema.validators import validator_for

        schemata = await executor.scalar("SELECT schemata FROM {x}actions WHERE action = ?", action)
        schema = orjson.loads(schemata) if isinstance(schemata, (str, bytes)) else schemata
        if isinstance(payload, (str, bytes, bytearray)):
            payload = orjson.loads(payload)
        found = sorted(
            validator_for(schema)(schema).iter_errors(payload), key=lambda e: [str(p) for p in e.absolute_path]
        )
    except Exception:
        found = []
    return found or list(amebo_errors or [])


def _patch_publish() -> None:
    from amebo.services import broker

    original = broker.publish
    if getattr(original, "_amebo_logging", False):
        return
    log = get_logger("amebo.events")

    async def publish(executor: Any, principal: Any, action: str, payload: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            result = await original(executor, principal, action, payload, *args, **kwargs)
        except broker.ServiceError as exc:
            if int(exc.status) == 406 and "errors" in exc.extra:
                owner = await _owner(executor, action)
                events.schema_validation_failed(
                    log,
                    action=action,
                    application=owner,
                    errors=await _validation_errors(executor, action, payload, exc.extra["errors"]),
                )
                metrics.count_validation_failure(owner, action)
            raise
        if not result.get("duplicate"):
            owner = await _owner(executor, action)
            events.event_published(
                log,
                action=action,
                application=owner,
                event_id=result["event"],
                size=len(orjson.dumps(result.get("payload"))),
            )
            metrics.count_published(owner, action)
        return result

    publish._amebo_logging = True  # type: ignore[attr-defined]
    publish.__wrapped__ = original  # type: ignore[attr-defined]
    broker.publish = publish


# --- deliveries: webhook_delivered, webhook_failed, trace and request id outward ----------------


def _error_fields(kind: str, message: str) -> dict[str, Any]:
    return {"error.type": kind, "error.message": message}


def _error_type(error: str, status: int) -> str:
    if status:
        return "httpx.HTTPStatusError"
    head = error.split(":", 1)[0].strip()
    return head if head.isidentifier() else "DeliveryError"


#: Within a delivery attempt: whether Amebo wrote its outcome back (set by writeback_attempt).
_written_back: ContextVar[dict[str, bool] | None] = ContextVar("amebo_logging_written_back", default=None)


#: The delivery attempts in flight in this process.
_ATTEMPTS: set[asyncio.Task[Any]] = set()


async def end_deliveries(_router: Any = None) -> None:
    """Amebo's last shutdown hook: the attempts still in flight are cancelled and awaited
    (at most 5 s), so each writes its record before the worker exits; Amebo closed their
    database and client already, and sends them again on its next start."""
    tasks = {t for t in _ATTEMPTS if not t.done() and t is not asyncio.current_task()}
    for task in tasks:
        task.cancel()
    if tasks:
        await asyncio.wait(tasks, timeout=5)


def _patch_deliveries() -> None:
    import amebo.aproko as aproko

    original = aproko.attempt
    if getattr(original, "_amebo_logging", False):
        return
    log = get_logger("amebo.aproko")

    async def attempt(executor: Any, d: dict[str, Any]) -> Any:
        number = (d.get("retries") or 0) + 1
        trace_id = d.get("trace_id") or ""
        with correlation_scope(new_correlation_id()):
            if trace_id:
                # the span Amebo puts in the traceparent it sends: the subscriber's parent
                span = aproko.delivery_span_id(str(d.get("gist")), number)
                set_trace_context(TraceContext((trace_id, span, "01")), new_span=False)
            started = time.monotonic_ns()
            stored = {"written": False}
            token = _written_back.set(stored)
            task = asyncio.current_task()
            if task is not None:
                _ATTEMPTS.add(task)
            try:
                result = await original(executor, d)
            except asyncio.CancelledError:
                # shutdown cancelled the attempt mid-flight: Amebo wrote nothing back, so the
                # gist is still pending and the next start sends it again as this same
                # attempt number; this record is the only trace of this try
                _interrupted_record(log, d, number, time.monotonic_ns() - started)
                metrics.count_delivery(False, False, (time.monotonic_ns() - started) / 1e9)
                raise
            finally:
                _written_back.reset(token)
                _ATTEMPTS.discard(task)
            _delivery_record(log, d, number, result, stored["written"])
        return result

    def _interrupted_record(log: Any, d: dict[str, Any], number: int, elapsed_ns: int) -> None:
        events.webhook_failed(
            log,
            event_id=d.get("event"),
            subscription=d.get("subscription") or "",
            action=d.get("action") or "",
            url=str(d.get("handler") or ""),
            attempt=number,
            max_retries=d.get("max_retries") or number,
            duration_ns=elapsed_ns,
            final=False,
            tags=["interrupted"],
            **_error_fields(
                "asyncio.CancelledError", f"interrupted at shutdown: Amebo sends it again as attempt {number}"
            ),
        )

    def _delivery_record(log: Any, d: dict[str, Any], number: int, result: Any, written: bool) -> None:
        max_retries = d.get("max_retries") or number
        status = int(result.get("status") or 0) if isinstance(result, dict) else 0
        common: dict[str, Any] = {
            "event_id": d.get("event"),
            "subscription": d.get("subscription"),
            "action": d.get("action") or "",
            "url": str(d.get("handler") or ""),
            "attempt": number,
            "max_retries": max_retries,
            "status_code": status or None,
            "duration_ns": int((result.get("ms") or 0) * 1_000_000) if isinstance(result, dict) else None,
        }
        if not written:
            # Amebo could not store the outcome (at shutdown its database closes under the
            # attempts in flight): the gist stays pending and is sent again as this attempt
            common["tags"] = ["interrupted"]
        ok = isinstance(result, dict) and bool(result.get("ok"))
        seconds = common["duration_ns"] / 1e9 if common["duration_ns"] is not None else None
        metrics.count_delivery(ok, written and (ok or number >= max_retries), seconds)
        if ok:
            common["status_code"] = status
            events.webhook_delivered(log, **common)
            return
        error = str(result.get("error") or f"HTTP {status}") if isinstance(result, dict) else "no result"
        message = (
            error
            if written
            else f"{error} (interrupted: Amebo could not record it, sends it again as attempt {number})"
        )
        failure = _error_fields(_error_type(error, status), message)
        events.webhook_failed(log, **common, **failure, final=None if written else False)

    original_pick = aproko._pick

    async def pick(*args: Any, **kwargs: Any) -> Any:
        daemon_cycled()  # the delivery daemon's heartbeat, for /health/detailed
        return await original_pick(*args, **kwargs)

    pick.__wrapped__ = original_pick  # type: ignore[attr-defined]
    aproko._pick = pick
    original_writeback = aproko.writeback_attempt

    async def writeback_attempt(*args: Any, **kwargs: Any) -> Any:
        # Amebo stored the attempt's outcome: it will not send this attempt again
        result = await original_writeback(*args, **kwargs)
        stored = _written_back.get()
        if stored is not None:
            stored["written"] = True
        return result

    writeback_attempt.__wrapped__ = original_writeback  # type: ignore[attr-defined]
    aproko.writeback_attempt = writeback_attempt
    attempt._amebo_logging = True  # type: ignore[attr-defined]
    attempt.__wrapped__ = original  # type: ignore[attr-defined]
    aproko.attempt = attempt
    gists: Any = sys.modules.get("amebo.controllers.gists")  # replays imported it by name
    if gists is not None and getattr(gists, "attempt", None) is original:
        gists.attempt = attempt

    original_client = aproko.http_client

    def http_client() -> Any:
        client = original_client()
        hooks = client.event_hooks
        if _request_hook not in hooks.get("request", []):
            client.event_hooks = {**hooks, "request": [*hooks.get("request", []), _request_hook]}
        return client

    http_client.__wrapped__ = original_client  # type: ignore[attr-defined]
    aproko.http_client = http_client


async def _request_hook(request: Any) -> None:
    """On every delivery: the delivery's correlation id, and the trace when Amebo sent none."""
    headers = request.headers
    cid = get_correlation_id()
    if cid is not None and "x-request-id" not in headers:
        headers["X-Request-ID"] = cid
    trace = get_trace_context()
    if trace is not None and "traceparent" not in headers:
        headers["traceparent"] = trace.header()


# --- heaven: print() output and unhandled errors as records -------------------------------------

_heaven_log = logging.getLogger("heaven")


def _level_of(text: str) -> int:
    if text.startswith(("[HEAVEN 5", "NOTE:", "JSON Serialization Error")):
        return logging.ERROR
    if text.startswith("[HEAVEN 4"):
        return logging.WARNING
    return logging.INFO


def _framework_print(
    *args: Any, sep: str | None = " ", end: str | None = "\n", file: Any = None, flush: bool = False
) -> None:
    """heaven's ``print()``: one record per call (decoration lines of ``=`` are dropped)."""
    if file is not None and file not in (sys.stdout, sys.__stdout__):
        print(*args, sep=sep, end=end, file=file, flush=flush)
        return
    text = " ".join(" ".join(str(a) for a in args).split())
    if not text or set(text) == {"="}:
        return
    exc = None
    if text.startswith("[HEAVEN 5"):
        caller = sys._getframe(1).f_locals
        candidate = caller.get("exc") or caller.get("err")
        exc = candidate if isinstance(candidate, BaseException) else None
    _heaven_log.log(_level_of(text), text, exc_info=(type(exc), exc, exc.__traceback__) if exc else None)


def _patch_heaven() -> None:
    import heaven.response
    import heaven.router

    for module in (heaven.router, heaven.response):
        module.print = _framework_print
    routes = heaven.router.Routes
    original = routes.handle
    if getattr(original, "_amebo_logging", False):
        return

    async def handle(
        self: Any, scope: Any, receive: Any, send: Any, metadata: Any = None, application: Any = None
    ) -> Any:
        response = await original(self, scope, receive, send, metadata, application)
        err = getattr(response, "_unhandled_error", None)
        if err is not None:
            metrics.count_error("unhandled")
        if err is not None and not getattr(application, "_debug", False):
            # heaven would print this line and the traceback to stdout/stderr: one record instead
            _heaven_log.error(
                "[HEAVEN 500] %s %s: %s",
                scope.get("method", "?"),
                scope.get("path", "?"),
                err,
                exc_info=(type(err), err, err.__traceback__),
            )
            response._unhandled_error = None
        return response

    handle._amebo_logging = True  # type: ignore[attr-defined]
    routes.handle = handle


# --- the app ----------------------------------------------------------------------------------------


def _make_app() -> Any:
    instrument()
    from amebo.router import router

    return CorrelationMiddleware(wrap_router(router), share_with_app=True)


def wrap_router(router: Any) -> Any:
    """Amebo's *router* with the integration's metrics (appended to its ``/metrics``) and
    ``/health/detailed`` and ``/health/database`` in front of it."""
    routes = [
        (method, template)
        for table in router.subdomains.values()
        for method, by in table.cache.items()
        for template in by
    ]
    routes += [("GET", path) for path in HealthRoutes.PATHS]
    return metrics.MetricsMiddleware(HealthRoutes(router), routes=metrics.RouteTemplates(routes))


def __getattr__(name: str) -> Any:
    # `app` is built on first use, so importing this module for instrument() alone does
    # not import Amebo's router (uvicorn's "amebo_logging.amebo:app" asks for it).
    if name == "app":
        with _lock:
            built = globals().get("_app")
            if built is None:
                built = _make_app()
                globals()["_app"] = built
        return built
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def main(argv: list[str] | None = None) -> None:
    """``python -m amebo_logging.amebo [--host H] [--port P] [--workers N]``: serve Amebo,
    instrumented, on Amebo's port (``AMEBO_PORT``, default 3310): uvicorn for one process,
    gunicorn with :mod:`amebo_logging.gunicorn` for several (so no record is torn on the
    stdout they share)."""
    import argparse

    parser = argparse.ArgumentParser(
        prog="python -m amebo_logging.amebo",
        description="Serve Amebo 0.9 with amebo-logging's records, catalog and traces.",
    )
    parser.add_argument(
        "--host",
        default=os.environ.get("AMEBO_HOST") or "0.0.0.0",
        help="address to bind (AMEBO_HOST; default 0.0.0.0, as Amebo's own launcher)",
    )
    parser.add_argument(
        "--port", type=int, default=int(os.environ.get("AMEBO_PORT") or 3310), help="port (AMEBO_PORT; default 3310)"
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=int(os.environ.get("WEB_CONCURRENCY") or 1),
        help="worker processes (WEB_CONCURRENCY; default 1); more than one runs gunicorn",
    )
    options = parser.parse_args(argv)
    if options.workers > 1:
        _serve_gunicorn(options.host, options.port, options.workers)
        return
    import uvicorn

    from .config import uvicorn_log_config

    uvicorn.run(
        "amebo_logging.amebo:app",
        host=options.host,
        port=options.port,
        log_config=uvicorn_log_config(),
        access_log=False,
    )


def _serve_gunicorn(host: str, port: int, workers: int) -> None:
    try:
        from gunicorn.app.wsgiapp import run
    except ImportError:
        raise SystemExit(
            "python -m amebo_logging.amebo: --workers above 1 runs gunicorn, which is not installed: "
            "pip install gunicorn uvicorn-worker (or, from amebo-logging's checkout, pip install '.[amebo]')"
        ) from None
    address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    sys.argv = [
        "gunicorn",
        "-c",
        "python:amebo_logging.gunicorn",
        "--bind",
        address,
        "--workers",
        str(workers),
        "amebo_logging.amebo:app",
    ]
    run()


if __name__ == "__main__":
    main()
