"""ASGI middleware: a correlation id and a trace span per request, and one access record.

Pure ASGI, so it wraps any ASGI app: heaven (Amebo's framework), Starlette, FastAPI::

    app = CorrelationMiddleware(app)

For each HTTP request it:

* takes the request id from ``X-Request-ID`` (the header is configurable) when it is 1-128
  characters of ``[A-Za-z0-9._:-]``, else generates ``uuid4().hex`` (a rejected value is
  never logged raw: only its length is);
* joins the caller's trace (one valid ``traceparent``, or a bare ``X-Amebo-Trace-Id``), or
  starts a new one, and opens this request's own span: records carry ``trace.id``,
  ``span.id`` and, when the caller sent a span, ``parent.id``.  A ``traceparent`` that is
  malformed, all-zero, version ``ff`` or repeated is invalid (W3C Trace Context);
* with ``share_with_app=True``, lets the app see the ids the records carry and no other: a
  generated request id as ``X-Request-ID``, and exactly one ``traceparent`` of the trace
  chosen here in place of whatever trace headers came (Amebo then stores the same trace id
  with the event it publishes, whatever its own parser would have made of them);
* echoes the id as ``X-Request-ID`` on the response, also on the 500 it sends itself when
  the app raises before responding;
* writes one ``http_request`` record, at DEBUG for probe paths (``/health``, ``/metrics``...);
* restores the context afterwards, whatever happened.
"""

from __future__ import annotations

import ipaddress
import time
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from typing import Any, Final

from .correlation import (
    CORRELATION_KEY,
    activate,
    current_context,
    new_correlation_id,
    new_span_id,
    new_trace_id,
    parse_traceparent,
    restore,
    valid_request_id,
)
from .logger import AmeboLogger, get_logger

__all__ = ["QUIET_PATHS", "CorrelationMiddleware", "client_fields"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

#: Probe and scrape paths, logged at DEBUG as Amebo 0.9 does.
QUIET_PATHS: Final = frozenset({"/health", "/healthz", "/readyz", "/metrics"})
_TRACE_ID_CHARS: Final = frozenset("0123456789abcdef")


def _header(headers: Iterable[tuple[bytes, bytes]], name: bytes) -> str | None:
    for key, value in headers:
        if key.lower() == name:
            return value.decode("latin-1")
    return None


def _only_header(headers: Iterable[tuple[bytes, bytes]], name: bytes) -> str | None:
    """The value of *name* when the request has it exactly once (W3C Trace Context: a
    repeated ``traceparent`` is invalid), else None."""
    found = [value for key, value in headers if key.lower() == name]
    return found[0].decode("latin-1") if len(found) == 1 else None


def client_fields(address: Any) -> dict[str, str]:
    """``client.ip`` when *address* is a valid IP address, else ``client.address`` (a unix
    socket path, a host name...); nothing for nothing."""
    if address is None or address == "":
        return {}
    text = str(address).strip("[]")
    try:
        return {"client.ip": str(ipaddress.ip_address(text.split("%", 1)[0]))}
    except ValueError:
        return {"client.address": text}


class CorrelationMiddleware:
    """See the module docstring.  *header* names the request-id header (``X-Request-ID``);
    *start_trace* starts a new trace for requests that bring none."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        header: str = "X-Request-ID",
        logger: AmeboLogger | None = None,
        quiet_paths: Iterable[str] = QUIET_PATHS,
        access_log: bool = True,
        start_trace: bool = True,
        share_with_app: bool = False,
    ) -> None:
        self.app = app
        self.header = header
        self._header_key = header.lower().encode("latin-1")
        self.log = logger or get_logger("amebo.access")
        self.quiet_paths = frozenset(quiet_paths)
        self.access_log = access_log
        self.start_trace = start_trace
        self.share_with_app = share_with_app

    def _context_for(self, headers: list[tuple[bytes, bytes]]) -> tuple[dict[str, Any], str, int | None, str]:
        """(context, request id, rejected id's length, trace flags)."""
        inbound = _header(headers, self._header_key)
        rejected = None
        if inbound is not None and valid_request_id(inbound):
            request_id = inbound
        else:
            request_id = new_correlation_id()
            rejected = len(inbound) if inbound is not None else None
        ctx: dict[str, Any] = {**(current_context() or {}), CORRELATION_KEY: request_id}
        for key in ("trace.id", "span.id", "parent.id"):
            ctx.pop(key, None)
        flags = "01"
        trace = parse_traceparent(_only_header(headers, b"traceparent"))
        if trace is not None:
            ctx["trace.id"], ctx["parent.id"], flags = trace
        else:
            bare = (_only_header(headers, b"x-amebo-trace-id") or "").strip().lower()
            if len(bare) == 32 and set(bare) <= _TRACE_ID_CHARS and set(bare) != {"0"}:
                ctx["trace.id"] = bare
            elif self.start_trace:
                ctx["trace.id"] = new_trace_id()
        if "trace.id" in ctx:
            ctx["span.id"] = new_span_id()
        return ctx, request_id, rejected, flags

    def _shared(
        self,
        scope: Scope,
        headers: list[tuple[bytes, bytes]],
        ctx: dict[str, Any],
        request_id: str,
        generated_id: bool,
        flags: str,
    ) -> Scope:
        """The scope the app sees: the request id and the trace the records carry, and no
        other.  Whatever trace headers came (valid, malformed, all-zero, repeated, a bare
        ``X-Amebo-Trace-Id``), the app gets exactly one valid ``traceparent``, of the trace
        chosen here: an app with a looser parser (Amebo's) cannot store another one."""
        drop = {b"traceparent", b"x-amebo-trace-id"}
        extra: list[tuple[bytes, bytes]] = []
        if generated_id:
            drop.add(self._header_key)
            extra.append((self._header_key, request_id.encode("latin-1")))
        if "trace.id" in ctx:
            extra.append((b"traceparent", f"00-{ctx['trace.id']}-{ctx['span.id']}-{flags}".encode()))
        if not extra and not any(k.lower() in drop for k, _ in headers):
            return scope
        kept = [(k, v) for k, v in headers if k.lower() not in drop]
        return {**scope, "headers": [*kept, *extra]}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        headers = scope.get("headers") or []
        ctx, request_id, rejected, flags = self._context_for(headers)
        token = activate(ctx, flags)
        try:
            if rejected is not None:
                self.log.warning("request_id_rejected", reason=f"invalid {self.header} header", length=rejected)
            if self.share_with_app:
                generated = request_id != _header(headers, self._header_key)
                scope = self._shared(scope, headers, ctx, request_id, generated, flags)
            if scope["type"] == "websocket":
                await self.app(scope, receive, send)
                return
            await self._http(scope, receive, send, request_id, headers)
        finally:
            restore(token)

    async def _http(
        self, scope: Scope, receive: Receive, send: Send, request_id: str, headers: list[tuple[bytes, bytes]]
    ) -> None:
        started = time.perf_counter_ns()
        status: int | None = None
        id_header = (self._header_key, request_id.encode("latin-1"))

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                kept = [(k, v) for k, v in message.get("headers", ()) if k.lower() != self._header_key]
                message = {**message, "headers": [*kept, id_header]}
            await send(message)

        error: BaseException | None = None
        try:
            await self.app(scope, receive, send_with_id)
        except BaseException as exc:
            error = exc
            if status is None:
                status = 500
                await self._send_500(send, id_header)
            raise
        finally:
            if self.access_log:
                self._access_record(scope, headers, status, time.perf_counter_ns() - started, error)

    @staticmethod
    async def _send_500(send: Send, id_header: tuple[bytes, bytes]) -> None:
        body = b"Internal Server Error"
        try:
            await send(
                {
                    "type": "http.response.start",
                    "status": 500,
                    "headers": [
                        (b"content-type", b"text/plain; charset=utf-8"),
                        (b"content-length", str(len(body)).encode()),
                        id_header,
                    ],
                }
            )
            await send({"type": "http.response.body", "body": body})
        except Exception:  # the client went away; the error is still raised to the server
            pass

    def _access_record(
        self,
        scope: Scope,
        headers: list[tuple[bytes, bytes]],
        status: int | None,
        duration_ns: int,
        error: BaseException | None,
    ) -> None:
        path = scope.get("path") or "/"
        status_code = status if status is not None else 500
        if path in self.quiet_paths:
            emit = self.log.debug
        elif status_code >= 500:
            emit = self.log.error
        else:
            emit = self.log.info
        client = scope.get("client")
        fields: dict[str, Any] = {
            "http.request.method": scope.get("method", "GET"),
            "url.path": path,
            "http.response.status_code": status_code,
            "event.duration": duration_ns,
        }
        version = scope.get("http_version")
        if version:
            fields["http.version"] = version
        if client:
            fields.update(client_fields(client[0]))
        agent = _header(headers, b"user-agent")
        if agent is not None:
            fields["user_agent.original"] = agent
        if error is not None and isinstance(error, Exception):
            fields["exc_info"] = error
        emit("http_request", **fields)
