"""The ``amebo-logship`` command (click): ``ship`` and ``reset-state``.

Every option also reads an ``AMEBO_LOGSHIP_*`` variable.  Operator errors print one line
and exit with a documented code (errors.py); the shipper's own logs are JSON on stderr.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
from pathlib import Path
from typing import Any

import click

from .. import configure_logging, get_logger
from .connection import ConnectionSettings, make_client, probe
from .errors import EXIT_AUTH, EXIT_CONFIG, EXIT_FAILURE, EXIT_STATE, OperatorError
from .state import StateError, reset_state

__all__ = ["main"]


def default_state_dir() -> Path:
    """``$XDG_STATE_HOME/amebo-logship``, else ``~/.local/state/amebo-logship``."""
    base = os.environ.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local", "state")
    return Path(base) / "amebo-logship"


def _env(name: str) -> str:
    return f"AMEBO_LOGSHIP_{name}"


def _secret(ctx: click.Context, value: str | None, file_value: Path | None, option: str, variable: str) -> str | None:
    if file_value is not None:
        try:
            return file_value.read_text().strip()
        except OSError as exc:
            raise OperatorError(EXIT_CONFIG, f"cannot read {option}-file {file_value}: {exc.strerror}") from None
    if value is not None and ctx.get_parameter_source(option.lstrip("-").replace("-", "_")) == click.core.ParameterSource.COMMANDLINE:
        click.echo(f"amebo-logship: warning: {option} on the command line is visible to every user in the process "
                   f"list; use {variable} or {option}-file instead", err=True)
    return value


def connection_options(fn: Any) -> Any:
    """The options every command that talks to Elasticsearch takes."""
    options = [
        click.option("--es-url", "es_urls", multiple=True, envvar=_env("ES_URL"), default=["http://localhost:9200"],
                     show_default=True, help="Elasticsearch URL; repeat for several nodes."),
        click.option("--api-key", envvar=_env("API_KEY"), help="API key (base64 id:key)."),
        click.option("--api-key-file", type=click.Path(path_type=Path, dir_okay=False), envvar=_env("API_KEY_FILE"),
                     help="Read the API key from this file."),
        click.option("--username", envvar=_env("USERNAME"), help="User for basic authentication."),
        click.option("--password", envvar=_env("PASSWORD"), help="Password for basic authentication."),
        click.option("--password-file", type=click.Path(path_type=Path, dir_okay=False), envvar=_env("PASSWORD_FILE"),
                     help="Read the password from this file."),
        click.option("--ca-certs", type=click.Path(dir_okay=False), envvar=_env("CA_CERTS"),
                     help="CA bundle to verify the cluster's certificate."),
        click.option("--insecure", is_flag=True, envvar=_env("INSECURE"),
                     help="Do NOT verify TLS certificates (anyone on the path can read and change the logs)."),
        click.option("--compress", is_flag=True, envvar=_env("COMPRESS"), help="gzip request bodies."),
    ]
    for option in reversed(options):
        fn = option(fn)
    return fn


def build_connection(ctx: click.Context, params: dict[str, Any]) -> ConnectionSettings:
    api_key = _secret(ctx, params["api_key"], params["api_key_file"], "--api-key", _env("API_KEY"))
    password = _secret(ctx, params["password"], params["password_file"], "--password", _env("PASSWORD"))
    if params["insecure"]:
        click.echo("amebo-logship: WARNING: --insecure: TLS certificates are NOT verified; anyone on the network "
                   "path can read and change what is shipped", err=True)
    return ConnectionSettings(urls=list(params["es_urls"]), api_key=api_key, username=params["username"],
                              password=password, ca_certs=params["ca_certs"], insecure=params["insecure"],
                              compress=params["compress"])


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(package_name="amebo-logging")
def main() -> None:
    """Ship Amebo's JSON log files into Elasticsearch, every complete line exactly once."""


@main.command()
@click.argument("patterns", nargs=-1, required=True)
@connection_options
@click.option("--data-stream", envvar=_env("DATA_STREAM"), default=None,
              help="Target data stream  [default: logs-amebo-default]")
@click.option("--index", envvar=_env("INDEX"), default=None, help="Target index, instead of a data stream.")
@click.option("--state-dir", type=click.Path(path_type=Path, file_okay=False, readable=False), envvar=_env("STATE_DIR"),
              default=default_state_dir, show_default="$XDG_STATE_HOME/amebo-logship",
              help="Where offsets are kept.")
@click.option("--dead-letter", type=click.Path(path_type=Path, dir_okay=False, readable=False), envvar=_env("DEAD_LETTER"),
              help="NDJSON file for refused documents  [default: STATE_DIR/dead-letter.ndjson]")
@click.option("--exclude", "excludes", multiple=True, envvar=_env("EXCLUDE"), help="Glob of paths to skip.")
@click.option("--batch-size", type=click.IntRange(1, 100_000), default=5000, show_default=True,
              envvar=_env("BATCH_SIZE"), help="Documents per bulk request at most.")
@click.option("--batch-bytes", type=click.IntRange(1024), default=10 * 1024 * 1024, show_default=True,
              envvar=_env("BATCH_BYTES"), help="Bytes per bulk request at most.")
@click.option("--flush-interval", type=click.FloatRange(0.01), default=1.0, show_default=True,
              envvar=_env("FLUSH_INTERVAL"), help="Send a partial batch after this many seconds.")
@click.option("--max-line-bytes", type=click.IntRange(64), default=1024 * 1024, show_default=True,
              envvar=_env("MAX_LINE_BYTES"), help="Longer lines are shipped cut to this, tagged truncated.")
@click.option("--scan-interval", type=click.FloatRange(0.05), default=1.0, show_default=True,
              envvar=_env("SCAN_INTERVAL"), help="Seconds between looks for new, renamed and deleted files.")
@click.option("--close-inactive", type=click.FloatRange(0.0), default=300.0, show_default=True,
              envvar=_env("CLOSE_INACTIVE"), help="Close a file renamed away after this many idle seconds.")
@click.option("--shutdown-timeout", type=click.FloatRange(0.0), default=30.0, show_default=True,
              envvar=_env("SHUTDOWN_TIMEOUT"), help="On SIGTERM/SIGINT, seconds to deliver what was read.")
@click.option("--backoff-initial", type=click.FloatRange(0.001), default=0.5, show_default=True,
              envvar=_env("BACKOFF_INITIAL"), help="First retry delay (seconds); doubles per failure.")
@click.option("--backoff-max", type=click.FloatRange(0.001), default=30.0, show_default=True,
              envvar=_env("BACKOFF_MAX"), help="Longest retry delay (seconds).")
@click.option("--once", is_flag=True, envvar=_env("ONCE"),
              help="Ship what the files hold now, wait for every acknowledgement, exit (a backfill).")
@click.option("--wait-for-files", is_flag=True, envvar=_env("WAIT_FOR_FILES"),
              help="Start even when no file matches yet.")
@click.option("--metrics-addr", envvar=_env("METRICS_ADDR"), metavar="HOST:PORT",
              help="Serve Prometheus /metrics and /health here (off by default).")
@click.option("--health-stall-seconds", type=click.FloatRange(1.0), default=300.0, show_default=True,
              envvar=_env("HEALTH_STALL_SECONDS"),
              help="/health is 503 when nothing was delivered this long while lines wait.")
@click.option("--give-up-after", type=click.FloatRange(0.0), default=60.0, show_default=True,
              envvar=_env("GIVE_UP_AFTER"),
              help="--once: exit 6 when Elasticsearch accepts nothing for this many seconds.")
@click.option("--max-open-files", type=click.IntRange(1), default=None, envvar=_env("MAX_OPEN_FILES"),
              help="Descriptors held at most  [default: the process limit less 64]")
@click.option("--dry-run", is_flag=True, envvar=_env("DRY_RUN"),
              help="Print the bulk requests (NDJSON) on stdout instead of sending them; save no offsets.")
@click.pass_context
def ship(ctx: click.Context, patterns: tuple[str, ...], **params: Any) -> None:
    """Follow the files matching PATTERNS (globs) and ship their lines to Elasticsearch."""
    from .report import LogStream, Progress, exit_code, summary_lines
    from .shipper import ShipOptions, Shipper

    progress = Progress() if params["once"] and not params["dry_run"] and _isatty(sys.stderr) else None
    configure_logging(stream=LogStream(sys.stderr, progress), fmt=os.environ.get("AMEBO_LOG_FORMAT") or "json",
                      service_name="amebo-logship", service_version=_version())
    logging.getLogger("elastic_transport").setLevel(logging.CRITICAL)  # its retries are ours to report
    log = get_logger("amebo.logship")
    try:
        if params["data_stream"] and params["index"]:
            raise OperatorError(EXIT_CONFIG, "give --data-stream or --index, not both")
        settings = build_connection(ctx, params)
        if params["dry_run"]:
            from .dryrun import ConsoleClient

            client: Any = ConsoleClient()
        else:
            client = make_client(settings)
            found = probe(client, settings)
            if found.reachable:
                log.info("elasticsearch_reachable", version=found.version, **{"url.full": settings.shown_urls()})
            else:
                log.warning("elasticsearch_unreachable", reason=found.problem, **{"url.full": settings.shown_urls()},
                            action="reading waits and retries until it answers")
        options = ShipOptions(
            patterns=list(patterns), target=params["index"] or params["data_stream"] or "logs-amebo-default",
            state_dir=params["state_dir"], dead_letter=params["dead_letter"], excludes=list(params["excludes"]),
            batch_size=params["batch_size"], batch_bytes=params["batch_bytes"],
            flush_interval=params["flush_interval"], max_line_bytes=params["max_line_bytes"],
            scan_interval=params["scan_interval"], shutdown_timeout=params["shutdown_timeout"],
            close_inactive=params["close_inactive"], backoff_initial=params["backoff_initial"],
            backoff_max=params["backoff_max"], once=params["once"] or params["dry_run"],
            wait_for_files=params["wait_for_files"], give_up_after=params["give_up_after"],
            max_open_files=params["max_open_files"], dry_run=params["dry_run"], where=settings.shown_urls(),
        )
        monitor_at = _parse_addr(params["metrics_addr"]) if params["metrics_addr"] else None
        shipper = Shipper(options, client, log, progress=progress)
        if monitor_at is not None:
            from .monitor import MonitorServer

            try:
                monitor = MonitorServer(shipper, client, *monitor_at,
                                        stall_seconds=params["health_stall_seconds"]).start()
            except OSError as exc:
                shipper.close()
                raise OperatorError(EXIT_CONFIG, f"cannot serve metrics on {params['metrics_addr']}: "
                                                 f"{exc.strerror or exc}") from None
            host, port = monitor.address[:2]
            log.info("monitor_listening", **{"url.full": f"http://{_host_for_url(host)}:{port}/metrics"},
                     port=port)
    except StateError as exc:
        _fail(EXIT_STATE, str(exc))
    except OperatorError as exc:
        _fail(exc.exit_code, exc.message)

    def on_signal(signum: int, _frame: Any) -> None:
        log.info("stop_requested", signal=signal.Signals(signum).name,
                 shutdown_timeout=options.shutdown_timeout,
                 action="a second signal stops at once (offsets are safe)")
        shipper.request_stop(signum)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    log.info("shipping_started", patterns=list(patterns), target=options.target, once=options.once,
             state_dir=str(options.state_dir), dry_run=options.dry_run)
    try:
        summary = shipper.run()
    except StateError as exc:
        _fail(EXIT_STATE, str(exc))
    except OperatorError as exc:
        _fail(exc.exit_code, exc.message)
    finally:
        if progress is not None:
            progress.finish()
    snap = summary.snapshot
    d, r = snap.delivery, snap.read
    log.info("shipping_stopped", lines=r.lines, delivered=d.delivered, duplicates=d.duplicates,
             dead_lettered=d.dead_lettered, failure_store=d.failure_store, parse_failures=r.parse_failures,
             truncated=r.truncated, empty_lines=r.empty, unsettled=summary.unsettled,
             left_bytes=summary.left_bytes, seconds=round(summary.seconds, 3), ended=summary.ended)
    for path, nbytes in summary.partial_lines.items():
        log.warning("partial_line_pending", **{"log.file.path": path}, bytes=nbytes,
                    reason="the file ends without a newline; that line ships once it is complete")
    code = exit_code(summary, options.once)
    if options.once:
        click.echo("\n".join(summary_lines(summary)), err=options.dry_run)
    elif summary.fatal is not None or summary.state_error is not None:
        click.echo("\n".join(summary_lines(summary)[1:]), err=True)
    sys.exit(code)


@main.command()
@click.option("--state-dir", type=click.Path(path_type=Path, file_okay=False, readable=False), envvar=_env("STATE_DIR"),
              default=default_state_dir, show_default="$XDG_STATE_HOME/amebo-logship")
@click.option("--json", "as_json", is_flag=True, help="One JSON array, for scripts.")
def status(state_dir: Path, as_json: bool) -> None:
    """Every tracked file: identity, shipped offset, size, lag and last delivery."""
    from .status import file_status, render_table

    try:
        rows = file_status(state_dir)
    except StateError as exc:
        _fail(EXIT_STATE, str(exc))
    if as_json:
        import orjson

        click.echo(orjson.dumps(rows).decode())
    else:
        click.echo(render_table(rows))


@main.command()
@connection_options
@click.option("--data-stream", envvar=_env("DATA_STREAM"), default=None,
              help="Target data stream  [default: logs-amebo-default]")
@click.option("--index", envvar=_env("INDEX"), default=None, help="Target index, instead of a data stream.")
@click.pass_context
def check(ctx: click.Context, **params: Any) -> None:
    """Check that shipping would work: connection, TLS, credentials, version, target, privileges.

    Prints one line per check; each problem says what to do.  Exits 0 only when all pass."""
    from .checks import run_checks

    try:
        settings = build_connection(ctx, params)
        client = make_client(settings)
    except OperatorError as exc:
        _fail(exc.exit_code, exc.message)
    target = params["index"] or params["data_stream"] or "logs-amebo-default"
    code = 0
    for result in run_checks(client, settings, target, is_index=bool(params["index"])):
        click.echo(f"{'ok  ' if result.ok else 'FAIL'}  {result.name}: {result.detail}")
        if not result.ok and code == 0:
            code = result.exit_code
    sys.exit(code)


@main.command()
@connection_options
@click.option("--kibana-url", envvar=_env("KIBANA_URL"), help="Also import kibana/amebo.ndjson into this Kibana.")
@click.option("--ilm-delete-after", default="90d", show_default=True, envvar=_env("ILM_DELETE_AFTER"),
              help="Delete backing indices this long after they roll over.")
@click.pass_context
def setup(ctx: click.Context, kibana_url: str | None, ilm_delete_after: str, **params: Any) -> None:
    """Install the ILM policy and index templates (and, with --kibana-url, the Kibana objects).

    Idempotent: prints what it created, updated or left unchanged."""
    from elasticsearch import ApiError, AuthenticationException, TransportError

    from . import elastic_setup, kibana

    try:
        settings = build_connection(ctx, params)
        client = make_client(settings)
        elastic_setup.apply(client, ilm_delete_after,
                            report=lambda c: click.echo(f"{c.action:9}  {c.kind} {c.name}"))
    except OperatorError as exc:
        _fail(exc.exit_code, exc.message)
    except AuthenticationException:
        _fail(EXIT_AUTH, f"Elasticsearch at {settings.shown_urls()} refused the credentials (HTTP 401)")
    except ApiError as exc:
        code = EXIT_AUTH if exc.status_code == 403 else EXIT_CONFIG
        hint = ": the user needs the manage_ilm and manage_index_templates cluster privileges" \
            if exc.status_code == 403 else ""
        _fail(code, f"Elasticsearch refused the set-up (HTTP {exc.status_code}: {_reason(exc)}){hint}")
    except TransportError as exc:
        _fail(EXIT_CONFIG, f"cannot reach Elasticsearch at {settings.shown_urls()}: {exc.message}")
    if kibana_url:
        headers = _auth_headers(settings)
        try:
            answer = kibana.import_objects(kibana_url, kibana.ndjson().encode(), headers=headers,
                                           ca_certs=settings.ca_certs, verify=not settings.insecure)
        except PermissionError as exc:
            _fail(EXIT_AUTH, str(exc))
        except RuntimeError as exc:
            _fail(EXIT_CONFIG, str(exc))
        click.echo(f"imported   {answer.get('successCount', 0)} Kibana saved objects into {kibana_url}")


def _reason(exc: Any) -> str:
    body = getattr(exc, "body", None)
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        return str(body["error"].get("reason") or body["error"].get("type"))
    return str(exc.message)


def _auth_headers(settings: ConnectionSettings) -> dict[str, str]:
    import base64

    if settings.api_key:
        return {"Authorization": f"ApiKey {settings.api_key}"}
    if settings.username is not None:
        token = base64.b64encode(f"{settings.username}:{settings.password or ''}".encode()).decode()
        return {"Authorization": f"Basic {token}"}
    return {}


@main.command("reset-state")
@click.option("--state-dir", type=click.Path(path_type=Path, file_okay=False, readable=False), envvar=_env("STATE_DIR"),
              default=default_state_dir, show_default="$XDG_STATE_HOME/amebo-logship")
@click.confirmation_option(prompt="Forget every offset? Every file will be shipped again from its start")
def reset_state_command(state_dir: Path) -> None:
    """Forget all offsets (after a lost or corrupt database).

    Lines shipped before are skipped as duplicates while their documents are in the same
    backing index; after a rollover they would be indexed again."""
    reset_state(state_dir)
    click.echo(f"offsets in {state_dir} were reset")


def _parse_addr(value: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[::1]:9100`` for IPv6) -> (host, port)."""
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or int(port) > 65535:
        raise OperatorError(EXIT_CONFIG, f"--metrics-addr {value!r} is not HOST:PORT, e.g. 127.0.0.1:9109")
    return host.strip("[]") or "0.0.0.0", int(port)


def _host_for_url(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def _isatty(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("amebo-logging")
    except PackageNotFoundError:
        return "unknown"


def _fail(code: int, message: str) -> None:
    click.echo(f"amebo-logship: error: {message}", err=True)
    sys.exit(code)


def run() -> None:
    """Console-script entry: never a traceback for an unexpected error, exit code 1."""
    try:
        main(standalone_mode=True)
    except SystemExit:
        raise
    except Exception as exc:  # noqa: BLE001 - the last line of defence
        get_logger("amebo.logship").exception("internal_error")
        click.echo(f"amebo-logship: internal error: {type(exc).__name__}: {exc} (please report it)", err=True)
        sys.exit(EXIT_FAILURE)
