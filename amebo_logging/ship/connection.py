"""Connection settings -> an Elasticsearch client, and the start-up probe.

TLS verification is on unless ``insecure`` is set.  Secrets come from the settings only
(options, environment variables or files), are never logged, and URLs are logged with any
userinfo password redacted.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from elastic_transport import ConnectionError as TransportConnectionError
from elastic_transport import ConnectionTimeout, TlsError
from elasticsearch import ApiError, AuthenticationException, Elasticsearch, UnsupportedProductError
from elasticsearch.serializer import NdjsonSerializer, OrjsonSerializer

from ..redaction import scrub_url_password
from .errors import EXIT_AUTH, EXIT_CONFIG, OperatorError

__all__ = ["ConnectionSettings", "make_client", "probe"]


class _JsonSerializer(OrjsonSerializer):
    """orjson, and a short cut for the common bulk answer: when every item succeeded
    (``"errors":false`` before ``"items"``), the thousands of item objects are counted, not
    built: ``{"errors": False, "items_count": N}``."""

    def loads(self, data: bytes) -> Any:
        items_at = data.find(b'"items":[', 0, 256)
        if items_at > 0 and b'"errors":false' in data[:items_at]:
            return {"errors": False, "items_count": data.count(b'"status":', items_at)}
        return super().loads(data)


class _BulkBodySerializer(NdjsonSerializer):
    """Sends a ready bulk body (bytes ending in a newline) as it is, without the copy the
    default NDJSON serializer makes."""

    def dumps(self, data: Any) -> bytes:
        if isinstance(data, bytes) and data.endswith(b"\n"):
            return data
        return super().dumps(data)


@dataclass
class ConnectionSettings:
    urls: list[str] = field(default_factory=lambda: ["http://localhost:9200"])
    api_key: str | None = field(default=None, repr=False)
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    ca_certs: str | None = None
    insecure: bool = False
    compress: bool = False
    request_timeout: float = 60.0

    def shown_urls(self) -> str:
        return ", ".join(scrub_url_password(u) for u in self.urls)


def _check_url(url: str) -> None:
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise OperatorError(EXIT_CONFIG, f"--es-url {scrub_url_password(url)!r} is not a valid URL: {exc}") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise OperatorError(
            EXIT_CONFIG,
            f"--es-url {scrub_url_password(url)!r} is not an http(s) URL with a host: "
            "use a URL like https://es.example.com:9200",
        )
    del port


def make_client(settings: ConnectionSettings) -> Elasticsearch:
    """The client for *settings*; raises OperatorError for unusable settings."""
    for url in settings.urls:
        _check_url(url)
    if settings.password is not None and settings.username is None:
        raise OperatorError(EXIT_CONFIG, "a password was given without --username: give both, or use --api-key")
    kwargs: dict[str, Any] = {
        "serializers": {"application/json": _JsonSerializer(), "application/x-ndjson": _BulkBodySerializer()},
        "request_timeout": settings.request_timeout,
        "max_retries": 0,  # the shipper retries, with its own backoff
        "retry_on_timeout": False,
        "http_compress": settings.compress,
    }
    if settings.api_key:
        kwargs["api_key"] = settings.api_key
    elif settings.username is not None:
        kwargs["basic_auth"] = (settings.username, settings.password or "")
    if settings.ca_certs:
        kwargs["ca_certs"] = settings.ca_certs
    if settings.insecure:
        kwargs["verify_certs"] = False
        kwargs["ssl_show_warn"] = False
    try:
        return Elasticsearch(settings.urls, **kwargs)
    except (ValueError, TypeError, OSError) as exc:
        raise OperatorError(EXIT_CONFIG, f"cannot set up the Elasticsearch client: {exc}") from None


@dataclass
class ProbeResult:
    reachable: bool
    version: str | None = None
    problem: str | None = None


def probe(client: Elasticsearch, settings: ConnectionSettings) -> ProbeResult:
    """Ask the cluster who it is.  Refused credentials and a non-Elasticsearch server are
    OperatorErrors; an unreachable cluster is a ProbeResult (the shipper waits for it)."""
    try:
        info = client.info()
    except AuthenticationException:
        raise OperatorError(
            EXIT_AUTH,
            f"Elasticsearch at {settings.shown_urls()} refused the credentials (HTTP 401): check --api-key "
            "(AMEBO_LOGSHIP_API_KEY) or --username/--password (AMEBO_LOGSHIP_USERNAME/PASSWORD)",
        ) from None
    except UnsupportedProductError:
        raise OperatorError(EXIT_CONFIG, f"the server at {settings.shown_urls()} is not Elasticsearch") from None
    except TlsError as exc:
        raise OperatorError(
            EXIT_CONFIG,
            f"TLS with {settings.shown_urls()} failed ({exc.message}): give the cluster's CA with --ca-certs",
        ) from None
    except (TransportConnectionError, ConnectionTimeout) as exc:
        return ProbeResult(False, problem=f"{type(exc).__name__}: {exc.message}")
    except ApiError as exc:
        if exc.status_code == 403:
            return ProbeResult(True, problem="the credentials may not read cluster info (HTTP 403)")
        return ProbeResult(False, problem=f"HTTP {exc.status_code}: {exc.message}")
    return ProbeResult(True, version=str(info.get("version", {}).get("number")))
