"""HTTP to one Elasticsearch node, over urllib3: a request in, a :class:`Reply` out, or a
:class:`NetworkError` saying which way the network failed (TLS, not reached, timed out).

Everything ``ship`` and ``check`` say to a cluster goes through :class:`HttpNode`: the bulk
requests (:mod:`.transport`) and the questions asked before shipping (:mod:`.checks`), so
a shipping run never loads the Elasticsearch client (with elastic_transport, httpx and
asyncio under it: a 1,000-line ``--once`` run went from 0.55-0.7 s to 0.4 s, and 52 to 42 MB
of RSS).  ``setup`` still uses the client.

TLS: the system's CA certificates, or ``--ca-certs``; TLS 1.2 or later; the certificate
must name the host (an IP address too).  Only ``--insecure`` turns verification off.
"""

from __future__ import annotations

import base64
import functools
import re
import ssl
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import orjson
import urllib3
from urllib3.exceptions import HTTPError, NewConnectionError, ReadTimeoutError
from urllib3.exceptions import SSLError as Urllib3SSLError
from urllib3.exceptions import TimeoutError as Urllib3TimeoutError

from ..redaction import scrub_url_password
from .connection import ConnectionSettings

__all__ = ["HttpError", "HttpNode", "NetworkError", "Reply", "auth_headers"]


def auth_headers(settings: ConnectionSettings) -> dict[str, str]:
    """The Authorization header of *settings* (none without credentials)."""
    if settings.api_key:
        return {"authorization": f"ApiKey {settings.api_key}"}
    if settings.username is not None:
        token = base64.b64encode(f"{settings.username}:{settings.password or ''}".encode()).decode()
        return {"authorization": f"Basic {token}"}
    return {}


@dataclass(frozen=True, slots=True)
class Reply:
    """A node's answer: its status, headers (case-insensitive) and body."""

    status: int
    headers: Any
    data: bytes

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    def json(self) -> Any:
        """The body parsed (None when it is not JSON)."""
        try:
            return orjson.loads(self.data) if self.data else None
        except orjson.JSONDecodeError:
            return None

    def error(self) -> tuple[str, str]:
        """(reason, error type) of an error answer, as Elasticsearch words them."""
        parsed = self.json()
        error = parsed.get("error") if isinstance(parsed, dict) else None
        if isinstance(error, dict):
            return str(error.get("reason") or error.get("type") or error), str(error.get("type") or "")
        if isinstance(error, str):
            return error, ""
        return self.data[:200].decode("utf-8", "replace").strip() or "with no body", ""


class HttpError(Exception):
    """A node answered with an error status."""

    def __init__(self, reply: Reply) -> None:
        self.status = reply.status
        self.reason, self.error_type = reply.error()
        super().__init__(f"HTTP {self.status}: {self.reason}")


class NetworkError(Exception):
    """No answer: *tls* (the handshake or the certificate failed), *read_timeout* (the node
    took the request and did not answer in time: busy, not gone), else not reached
    (refused, no such host, reset, connect timeout)."""

    def __init__(self, message: str, *, tls: bool = False, read_timeout: bool = False) -> None:
        super().__init__(message)
        self.message = message
        self.tls = tls
        self.read_timeout = read_timeout


_OBJECT_REPR = re.compile(r"^(<[^>]*>|HTTPS?Connection(Pool)?\([^)]*\)): ")


def _why(exc: BaseException) -> str:
    """What urllib3 says went wrong, without its objects' reprs."""
    last = exc.args[-1] if exc.args else exc
    text = str(last) if isinstance(last, (str, BaseException)) else str(exc)
    return _OBJECT_REPR.sub("", text) or type(exc).__name__


@functools.cache
def _tls_context(ca_certs: str | None, insecure: bool) -> ssl.SSLContext:
    """One context for every node and sender of a run (loading the system's CAs takes 35 ms:
    64 senders each loading them was 2 s of a start over TLS); a context is safe to share."""
    if insecure:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    else:
        context = ssl.create_default_context(cafile=ca_certs)  # (None: the system's CAs)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context


class HttpNode:
    """One node of *settings*, at *url*: a pool of *connections* (one: a sender's own)."""

    def __init__(self, url: str, settings: ConnectionSettings, *, connections: int = 1) -> None:
        parts = urlsplit(url)
        self.url = url
        self.shown = scrub_url_password(url)
        self.prefix = parts.path.rstrip("/")
        self.headers = {"accept": "application/json", **auth_headers(settings)}
        self.timeout = settings.request_timeout
        host = parts.hostname or "localhost"
        pool: urllib3.HTTPConnectionPool
        if parts.scheme == "https":
            pool = urllib3.HTTPSConnectionPool(
                host,
                parts.port or 443,
                maxsize=connections,
                block=True,
                ssl_context=_tls_context(settings.ca_certs, settings.insecure),
                assert_hostname=False if settings.insecure else None,
            )
            if settings.insecure:
                urllib3.disable_warnings(urllib3.exceptions.InsecureRequestWarning)
        else:
            pool = urllib3.HTTPConnectionPool(host, parts.port or 9200, maxsize=connections, block=True)
        self.pool = pool

    def request(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
        timeout: urllib3.Timeout | float | None = None,
    ) -> Reply:
        """*method* *path* (after the URL's own path); raises :class:`NetworkError` when no
        answer came, never for a status."""
        try:
            response = self.pool.urlopen(
                method,
                self.prefix + path,
                body=body,
                headers={**self.headers, **headers} if headers else self.headers,
                retries=False,
                redirect=False,
                timeout=self.timeout if timeout is None else timeout,
            )
            return Reply(response.status, response.headers, response.data)
        except (Urllib3SSLError, ssl.SSLError) as exc:
            raise NetworkError(_why(exc), tls=True) from None
        except ReadTimeoutError as exc:
            raise NetworkError(f"no answer in time: {_why(exc)}", read_timeout=True) from None
        except NewConnectionError as exc:
            raise NetworkError(f"cannot connect: {_why(exc)}") from None
        except Urllib3TimeoutError as exc:
            raise NetworkError(f"cannot connect in time: {_why(exc)}") from None
        except (HTTPError, OSError) as exc:  # reset, refused mid-way, a broken answer...
            raise NetworkError(f"{type(exc).__name__}: {_why(exc)}") from None

    def json(self, method: str, path: str, body: Any = None) -> Any:
        """The JSON answer of a request with a JSON *body*; raises :class:`HttpError` for an
        error status, :class:`NetworkError` for no answer."""
        data = None if body is None else orjson.dumps(body)
        reply = self.request(method, path, data, {"content-type": "application/json"} if data else None)
        if not reply.ok:
            raise HttpError(reply)
        return reply.json()

    def close(self) -> None:
        self.pool.close()
