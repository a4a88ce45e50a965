"""Connection settings; what the cluster's answer to ``GET /`` means; the Elasticsearch
client (``setup`` only: ``ship`` and ``check`` speak HTTP, :mod:`.http`).

TLS verification is on unless ``insecure`` is set.  Secrets come from the settings only
(options, environment variables or files), are never logged, and URLs are logged with any
userinfo password redacted.  :func:`explain` is the one place an answer becomes a message:
``ship``'s start, ``check`` and ``/health`` all say the same thing for the same answer.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from ..redaction import scrub_url_password
from .errors import EXIT_AUTH, EXIT_CONFIG, OperatorError

if TYPE_CHECKING:
    from elasticsearch import Elasticsearch

__all__ = ["ClusterAnswer", "ConnectionSettings", "Explanation", "explain", "make_client", "validate"]


@dataclass
class ConnectionSettings:
    urls: list[str] = field(default_factory=lambda: ["http://localhost:9200"])
    api_key: str | None = field(default=None, repr=False)
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    ca_certs: str | None = None
    insecure: bool = False
    compress: str = "auto"  # --compress: auto, gzip, off (the bulk bodies' business: see pack.py)
    request_timeout: float = 60.0

    def shown_urls(self) -> str:
        return ", ".join(scrub_url_password(u) for u in self.urls)


def _check_url(url: str) -> None:
    shown = scrub_url_password(url)
    if "://" not in url:
        raise OperatorError(
            EXIT_CONFIG,
            f"--es-url {shown!r} has no scheme: use http://{shown} (or https://{shown} for a cluster with TLS)",
        )
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError as exc:
        raise OperatorError(
            EXIT_CONFIG,
            f"--es-url {shown!r} is not a valid URL ({exc}): use a URL like "
            "https://es.example.com:9200; give several nodes as separate --es-url "
            "options, or separated by commas in AMEBO_LOGSHIP_ES_URL",
        ) from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise OperatorError(
            EXIT_CONFIG,
            f"--es-url {shown!r} is not an http(s) URL with a host: use a URL like https://es.example.com:9200",
        )


def validate(settings: ConnectionSettings) -> None:
    """Raise OperatorError, naming the fix, when *settings* cannot be used."""
    for url in settings.urls:
        _check_url(url)
    if settings.password is not None and settings.username is None:
        raise OperatorError(EXIT_CONFIG, "a password was given without --username: give both, or use --api-key")
    if settings.ca_certs is not None:
        import os

        if not os.path.isfile(settings.ca_certs):
            raise OperatorError(
                EXIT_CONFIG,
                f"--ca-certs {settings.ca_certs}: no such file: give the path of the "
                "PEM file holding the CA certificate that signed the cluster's",
            )
        if not os.access(settings.ca_certs, os.R_OK):
            raise OperatorError(
                EXIT_CONFIG, f"--ca-certs {settings.ca_certs} cannot be read by this user: fix its permissions"
            )


def make_client(settings: ConnectionSettings) -> Elasticsearch:
    """The client for *settings*; raises OperatorError for unusable settings."""
    from elasticsearch import Elasticsearch
    from elasticsearch.serializer import OrjsonSerializer

    validate(settings)
    kwargs: dict[str, Any] = {
        "serializers": {"application/json": OrjsonSerializer()},
        "request_timeout": settings.request_timeout,
        "max_retries": 0,  # the shipper retries, with its own backoff
        "retry_on_timeout": False,
        "http_compress": settings.compress == "gzip",
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


@dataclass(frozen=True)
class Explanation:
    """What a :class:`ClusterAnswer` means: *ok*; else whether waiting may help (*retry*), the
    exit code of a run that cannot go on, and one line naming the cause and the fix."""

    ok: bool
    message: str
    exit_code: int = 0
    retry: bool = False


_PLAIN_HTTP = (
    "wrong version number",
    "record layer failure",
    "unknown protocol",
    "packet length too long",
    "http request",
)


def explain(answer: ClusterAnswer, settings: ConnectionSettings) -> Explanation:
    """The meaning of *answer*, in one line that names the cause and the fix."""
    urls = settings.shown_urls()
    problem, detail = answer.problem, answer.detail
    if problem is None:
        return Explanation(True, f"{urls} answers: Elasticsearch {answer.version}")
    if problem == "credentials":
        if not (settings.api_key or settings.username):
            return Explanation(
                False,
                f"Elasticsearch at {urls} requires credentials (HTTP 401): give "
                "--api-key-file (AMEBO_LOGSHIP_API_KEY_FILE), or --username with "
                "--password-file",
                EXIT_AUTH,
            )
        return Explanation(
            False,
            f"Elasticsearch at {urls} refused the credentials (HTTP 401): check --api-key "
            "(AMEBO_LOGSHIP_API_KEY) or --username/--password (AMEBO_LOGSHIP_USERNAME/PASSWORD)",
            EXIT_AUTH,
        )
    if problem == "forbidden":
        return Explanation(
            True,
            f"{urls} answers; the credentials may not read cluster information (HTTP 403), "
            "which shipping does not need",
        )
    if problem == "not_elasticsearch":
        return Explanation(
            False,
            f"the server at {urls} is not Elasticsearch (its answer has no X-Elastic-Product "
            "header): check --es-url (a proxy in front must pass the header through)",
            EXIT_CONFIG,
        )
    if problem == "tls":
        low = detail.lower()
        if any(marker in low for marker in _PLAIN_HTTP):
            plain = ", ".join(u.replace("https://", "http://", 1) for u in urls.split(", "))
            return Explanation(
                False, f"the server at {urls} speaks plain HTTP, not TLS ({detail}): use {plain}", EXIT_CONFIG
            )
        if "hostname mismatch" in low or "address mismatch" in low or "doesn't match" in low:
            return Explanation(
                False,
                f"the certificate of {urls} is not issued for that host name ({detail}): use "
                "the host name the certificate names",
                EXIT_CONFIG,
            )
        if settings.ca_certs:
            return Explanation(
                False,
                f"TLS with {urls} failed ({detail}): the certificate is not signed by the CA "
                f"in --ca-certs {settings.ca_certs}: give the CA that signed it",
                EXIT_CONFIG,
            )
        return Explanation(
            False,
            f"TLS with {urls} failed ({detail}): give the CA certificate that signed the "
            "cluster's with --ca-certs FILE (AMEBO_LOGSHIP_CA_CERTS)",
            EXIT_CONFIG,
        )
    if problem == "unreachable":
        return Explanation(
            False,
            f"Elasticsearch at {urls} is unreachable ({detail}): is it running and reachable from here? check --es-url",
            EXIT_CONFIG,
            retry=True,
        )
    return Explanation(False, f"Elasticsearch at {urls} answered {detail}", EXIT_CONFIG)
