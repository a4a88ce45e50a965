"""Amebo 0.9, instrumented: every event structured, deduplicated and linked end to end.

The one-line change for an Amebo operator::

    uvicorn amebo.router:router            # before
    uvicorn amebo_logging.amebo:app        # after: same port and options

(or ``python -m amebo_logging.amebo``, on Amebo's port 3310; gunicorn with uvicorn workers
takes ``amebo_logging.amebo:app`` too).  For an app you assemble yourself, call
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

import logging
import os
import sys
import threading
import time
from importlib.metadata import PackageNotFoundError, version
from typing import Any, Final

import orjson

from . import events
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
from .logger import get_logger

__all__ = ["TESTED_AMEBO", "TESTED_HEAVEN", "app", "instrument", "instrumented", "main"]  # noqa: F822 - app is lazy

#: Amebo and heaven releases the integration was tested with (major.minor).
TESTED_AMEBO: Final = ("0.9",)
TESTED_HEAVEN: Final = ("2.4",)

#: Validation errors kept on a ``schema_validation_failed`` record, and their length.
MAX_VALIDATION_ERRORS: Final = 20
MAX_VALIDATION_ERROR_CHARS: Final = 300

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
        import amebo.router  # noqa: F401 - its import-time configure_logging() now re-applies ours

        _patch_publish()
        _patch_deliveries()
        _patch_heaven()
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


def _validation_errors(errors: Any) -> list[str]:
    out = []
    for err in list(errors or [])[:MAX_VALIDATION_ERRORS]:
        text = str(err)
        out.append(text if len(text) <= MAX_VALIDATION_ERROR_CHARS else text[:MAX_VALIDATION_ERROR_CHARS] + "...")
    return out


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
                events.schema_validation_failed(
                    log,
                    action=action,
                    application=await _owner(executor, action),
                    errors=_validation_errors(exc.extra["errors"]),
                )
            raise
        if not result.get("duplicate"):
            events.event_published(
                log,
                action=action,
                application=await _owner(executor, action),
                event_id=result["event"],
                size=len(orjson.dumps(result.get("payload"))),
            )
        return result

    publish._amebo_logging = True  # type: ignore[attr-defined]
    publish.__wrapped__ = original  # type: ignore[attr-defined]
    broker.publish = publish


# --- deliveries: webhook_delivered, webhook_failed, trace and request id outward ----------------


def _error_type(error: str, status: int) -> str:
    if status:
        return "httpx.HTTPStatusError"
    head = error.split(":", 1)[0].strip()
    return head if head.isidentifier() else "DeliveryError"


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
            result = await original(executor, d)
            _delivery_record(log, d, number, result)
        return result

    def _delivery_record(log: Any, d: dict[str, Any], number: int, result: Any) -> None:
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
        if isinstance(result, dict) and result.get("ok"):
            common["status_code"] = status
            events.webhook_delivered(log, **common)
            return
        error = str(result.get("error") or f"HTTP {status}") if isinstance(result, dict) else "no result"
        failure: dict[str, Any] = {"error.type": _error_type(error, status), "error.message": error}
        events.webhook_failed(log, **common, **failure)

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

    return CorrelationMiddleware(router, share_with_app=True)


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
    """``python -m amebo_logging.amebo [--host H] [--port P] [uvicorn options...]``: serve
    Amebo, instrumented, on Amebo's port (``AMEBO_PORT``, default 3310)."""
    import argparse

    import uvicorn

    from .config import uvicorn_log_config

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
    parser.add_argument("--workers", type=int, default=None, help="worker processes (uvicorn's --workers)")
    options = parser.parse_args(argv)
    uvicorn.run(
        "amebo_logging.amebo:app",
        host=options.host,
        port=options.port,
        workers=options.workers,
        log_config=uvicorn_log_config(),
        access_log=False,
    )


if __name__ == "__main__":
    main()
