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

__all__ = ["ClusterAnswer", "ConnectionSettings", "ask_cluster", "make_client", "probe"]


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
class ClusterAnswer:
    """What asking the cluster who it is (``GET /``) gave: its info, or one kind of problem.

    *problem* is None, ``"tls"``, ``"unreachable"``, ``"credentials"`` (401),
    ``"forbidden"`` (403), ``"not_elasticsearch"`` or ``"http"``; *detail* says more."""

    info: dict[str, Any] | None
    problem: str | None = None
    detail: str = ""

    @property
    def version(self) -> str:
        return str((self.info or {}).get("version", {}).get("number", "unknown"))


def ask_cluster(client: Elasticsearch) -> ClusterAnswer:
    """``GET /``, with every way it can fail sorted into a :class:`ClusterAnswer`."""
    try:
        return ClusterAnswer(client.info().body)
    except AuthenticationException:
        return ClusterAnswer(None, "credentials", "HTTP 401")
    except UnsupportedProductError:
        return ClusterAnswer(None, "not_elasticsearch")
    except TlsError as exc:
        return ClusterAnswer(None, "tls", str(exc.message))
    except (TransportConnectionError, ConnectionTimeout) as exc:
        return ClusterAnswer(None, "unreachable", f"{type(exc).__name__}: {exc.message}")
    except ApiError as exc:
        return ClusterAnswer(None, "forbidden" if exc.status_code == 403 else "http",
                             f"HTTP {exc.status_code}: {exc.message}")


@dataclass
class ProbeResult:
    reachable: bool
    version: str | None = None
    problem: str | None = None


def probe(client: Elasticsearch, settings: ConnectionSettings) -> ProbeResult:
    """Ask the cluster who it is.  Refused credentials, TLS failures and a server that is not
    Elasticsearch are OperatorErrors; an unreachable cluster is a ProbeResult (the shipper
    waits for it)."""
    answer = ask_cluster(client)
    urls = settings.shown_urls()
    if answer.problem == "credentials":
        raise OperatorError(
            EXIT_AUTH,
            f"Elasticsearch at {urls} refused the credentials (HTTP 401): check --api-key "
            "(AMEBO_LOGSHIP_API_KEY) or --username/--password (AMEBO_LOGSHIP_USERNAME/PASSWORD)",
        )
    if answer.problem == "not_elasticsearch":
        raise OperatorError(EXIT_CONFIG, f"the server at {urls} is not Elasticsearch")
    if answer.problem == "tls":
        raise OperatorError(EXIT_CONFIG, f"TLS with {urls} failed ({answer.detail}): give the cluster's CA "
                                         "with --ca-certs")
    if answer.problem == "forbidden":
        return ProbeResult(True, problem="the credentials may not read cluster info (HTTP 403)")
    if answer.problem is not None:
        return ProbeResult(False, problem=answer.detail)
    return ProbeResult(True, version=answer.version)
