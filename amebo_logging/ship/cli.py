"""The ``amebo-logship`` command: thin click commands over the shipper and its checks.

Each command parses its options (:mod:`.params`: command line > ``AMEBO_LOGSHIP_*`` >
``--config`` > default), builds what it runs, runs it and maps the outcome to the one
exit-code table (:mod:`.errors`).  Errors are one line, ``amebo-logship: error: ...``, naming
the cause and the fix; never a traceback, except for a bug (exit 1).
"""

from __future__ import annotations

import logging
import os
import re
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn

import click

from . import formats
from .concurrency import DEFAULT_INITIAL, DEFAULT_MAXIMUM
from .connection import ConnectionSettings, explain, make_client, validate
from .errors import EXIT_AUTH, EXIT_CODES, EXIT_CONFIG, EXIT_FAILURE, EXIT_STATE, OperatorError
from .params import COMPRESSION, SIZE, EnvOption, config_option, env
from .state import StateError

__all__ = ["main", "run"]

CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 110}
PRECEDENCE = (
    "Each option is taken from the command line, else its AMEBO_LOGSHIP_* variable, else the --config "
    "file, else its default."
)
_TIME_UNIT = re.compile(r"^\d+(d|h|m|s|ms|micros|nanos)$")


def default_state_dir() -> Path:
    """``$XDG_STATE_HOME/amebo-logship``, else ``~/.local/state/amebo-logship``."""
    base = os.environ.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local", "state")
    return Path(base) / "amebo-logship"


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("amebo-logging")
    except PackageNotFoundError:
        return "unknown"


def option(*decls: str, **kwargs: Any) -> Any:
    return click.option(*decls, cls=EnvOption, **kwargs)


def _built_with() -> str:
    """What this install reads Docker's logs with: the C unwrapper, or pure Python (and why)."""
    if formats.c_unwrap is not None:
        return "Docker json-file unwrapped in C"
    return "Docker json-file read in pure Python: no C unwrapper (no C compiler when this was installed)"


def version_option(fn: Any) -> Any:
    """``--version``: the version is looked up when asked for (reading the package's metadata
    took 3 ms, six commands' worth at every start)."""

    def show(ctx: click.Context, _param: click.Parameter, value: bool) -> None:
        if value and not ctx.resilient_parsing:
            click.echo(f"amebo-logship (amebo-logging) {_version()}; {_built_with()}")
            ctx.exit()

    return click.option(
        "--version", is_flag=True, expose_value=False, is_eager=True, callback=show, help="Show the version and exit."
    )(fn)


def state_dir_option(fn: Any) -> Any:
    return option(
        "--state-dir",
        type=click.Path(path_type=Path, file_okay=False, readable=False),
        default=default_state_dir,
        show_default="$XDG_STATE_HOME/amebo-logship",
        help="Where offsets (and, by default, the dead-letter file) are kept.",
    )(fn)


def connection_options(fn: Any) -> Any:
    """The options every command that talks to Elasticsearch takes."""
    options = [
        option(
            "--es-url",
            "es_urls",
            multiple=True,
            default=["http://localhost:9200"],
            show_default=True,
            metavar="URL",
            help="Elasticsearch URL; repeat (or separate by commas in the variable) for several nodes.",
        ),
        option(
            "--api-key",
            help="API key (base64 id:key). Visible in the process list: prefer the variable or --api-key-file.",
        ),
        option(
            "--api-key-file",
            type=click.Path(path_type=Path, dir_okay=False, readable=False),
            help="Read the API key from this file.",
        ),
        option("--username", help="User for basic authentication."),
        option("--password", help="Password for basic authentication. Prefer the variable or --password-file."),
        option(
            "--password-file",
            type=click.Path(path_type=Path, dir_okay=False, readable=False),
            help="Read the password from this file.",
        ),
        option(
            "--ca-certs",
            type=click.Path(dir_okay=False, readable=False),
            metavar="FILE",
            help="CA bundle (PEM) that signed the cluster's certificate  [default: the system's CAs]",
        ),
        option(
            "--insecure",
            is_flag=True,
            help="Do NOT verify TLS certificates (anyone on the path can read and change the logs).",
        ),
        option(
            "--compress",
            type=COMPRESSION,
            default="auto",
            is_flag=False,
            flag_value="gzip",
            show_default=True,
            metavar="[auto|gzip|off]",
            help="gzip bulk bodies (level 1, as Filebeat and Logstash): auto does when bulk round trips take "
            "0.2 s or more (many requests in flight), not nearer, where it would cost CPU and save little; "
            "--compress alone means gzip.",
        ),
    ]
    for opt in reversed(options):
        fn = opt(fn)
    return fn


def target_options(fn: Any) -> Any:
    fn = option("--index", default=None, help="Target index, instead of a data stream.")(fn)
    return option("--data-stream", default=None, help="Target data stream  [default: logs-amebo-default]")(fn)


def _secret(ctx: click.Context, value: str | None, file_value: Path | None, name: str) -> str | None:
    if file_value is not None:
        try:
            return file_value.read_text().strip()
        except OSError as exc:
            raise OperatorError(EXIT_CONFIG, f"cannot read --{name}-file {file_value}: {exc.strerror}") from None
    source = ctx.get_parameter_source(name.replace("-", "_"))
    if value is not None and source == click.core.ParameterSource.COMMANDLINE:
        click.echo(
            f"amebo-logship: warning: --{name} on the command line is visible to every user in the process "
            f"list; use {env(name)} or --{name}-file instead",
            err=True,
        )
    return value


def build_connection(ctx: click.Context, params: dict[str, Any]) -> ConnectionSettings:
    api_key = _secret(ctx, params["api_key"], params["api_key_file"], "api-key")
    password = _secret(ctx, params["password"], params["password_file"], "password")
    if params["insecure"]:
        click.echo(
            "amebo-logship: WARNING: --insecure: TLS certificates are NOT verified; anyone on the network "
            "path can read and change what is shipped",
            err=True,
        )
    return ConnectionSettings(
        urls=list(params["es_urls"]),
        api_key=api_key,
        username=params["username"],
        password=password,
        ca_certs=params["ca_certs"],
        insecure=params["insecure"],
        compress=params["compress"],
    )


def _own_logging(log_format: str, verbosity: int, stream: Any) -> Any:
    """The shipper's own records: console lines for a person at a terminal, else ECS JSON."""
    from .. import configure_logging, get_logger

    fmt = None if log_format == "auto" else log_format
    if fmt is None and not (os.environ.get("AMEBO_LOG_FORMAT") or "").strip():
        fmt = "console" if stream.isatty() else "json"
    try:
        base = logging.getLevelName((os.environ.get("AMEBO_LOG_LEVEL") or "info").strip().upper())
        level = base if isinstance(base, int) else None
        configure_logging(
            stream=stream,
            fmt=fmt,
            service_name="amebo-logship",
            service_version=_version(),
            level=None if level is None else min(50, max(10, level - 10 * verbosity)),
        )
    except ValueError as exc:
        raise OperatorError(EXIT_CONFIG, str(exc)) from None
    logging.getLogger("elastic_transport").setLevel(logging.CRITICAL)  # its retries are ours to report
    return get_logger("amebo.logship")


def _fail(code: int, message: str) -> None:
    click.echo(f"amebo-logship: error: {message}", err=True)
    sys.exit(code)


def _exit_codes() -> str:
    return "\n".join(f"  {code:<5} {meaning}" for code, meaning in EXIT_CODES)


@click.group(context_settings=CONTEXT, epilog="\b\nExit codes:\n" + _exit_codes())
@version_option
def main() -> None:
    """Ship Amebo's JSON log files into Elasticsearch, every complete line exactly once.

    \b
    Start here:
      amebo-logship ship amebo.log --once --dry-run        see the documents, no cluster needed
      amebo-logship check --es-url https://es:9200         would shipping work?
      amebo-logship setup --es-url https://es:9200         templates, ILM, Kibana objects
      amebo-logship ship '/var/log/amebo/*.log' --es-url https://es:9200
    """


@main.command(context_settings=CONTEXT, epilog=PRECEDENCE)
@click.argument("patterns", nargs=-1, required=True)
@config_option("ship")
@connection_options
@target_options
@state_dir_option
@option(
    "--dead-letter",
    type=click.Path(path_type=Path, dir_okay=False, readable=False),
    metavar="FILE",
    help="NDJSON file for refused documents  [default: STATE_DIR/dead-letter.ndjson]",
)
@option(
    "--exclude",
    "excludes",
    multiple=True,
    metavar="GLOB",
    help=(
        "Skip files matching this; repeatable. Without a '/' it matches the base name (*.tmp); an absolute "
        "pattern, the whole path; a relative one with a '/', the path's last parts (archive/*.log)."
    ),
)
@option(
    "--container",
    "containers",
    multiple=True,
    metavar="GLOB",
    help="Only the logs of containers whose name matches (Docker: its name; Kubernetes: the container's "
    "within its pod); repeatable.  [default: every container]",
)
@option(
    "--host-name",
    metavar="NAME",
    help="The host.name documents get  [default: this machine's name; in a Kubernetes pod, set it to the node's]",
)
@option(
    "--format",
    "file_format",
    type=click.Choice(["auto", "json", "docker", "cri"]),
    default="auto",
    show_default=True,
    help="What the files hold: JSON lines, Docker json-file or CRI container logs (partial lines "
    "joined), or auto: decided per file from its first line.",
)
@option("--once", is_flag=True, help="Ship what the files hold now, wait for every acknowledgement, exit (a backfill).")
@option(
    "--dry-run",
    is_flag=True,
    help="Print the bulk requests (NDJSON) on stdout instead of sending them; save no "
    "offsets; no cluster needed. Implies --once.",
)
@option(
    "--give-up-after",
    type=click.FloatRange(0.0),
    default=60.0,
    show_default=True,
    metavar="SECONDS",
    help="--once: exit 6 when Elasticsearch accepts nothing this long (nothing is lost).",
)
@option(
    "--batch-size",
    type=click.IntRange(1, 100_000),
    default=10000,
    show_default=True,
    help="Documents per bulk request at most.",
)
@option(
    "--batch-bytes",
    type=SIZE(1024),
    default="10MiB",
    show_default=True,
    help="Bytes per bulk request at most (10MiB, 512KiB, ...).",
)
@option(
    "--max-in-flight",
    type=click.IntRange(1, 256),
    default=DEFAULT_MAXIMUM,
    show_default=True,
    metavar="N",
    help="Bulk requests in flight at most; how many is learned from the cluster's round-trip times "
    "and push-back (429, 503, timeouts), starting at --initial-in-flight. 1: one request at a time.",
)
@option(
    "--initial-in-flight",
    type=click.IntRange(1, 256),
    default=DEFAULT_INITIAL,
    show_default=True,
    metavar="N",
    help="Bulk requests in flight at the start, before the cluster's answers say more (at most "
    "--max-in-flight). Shippers that start together against one cluster (a DaemonSet) start lower, "
    "at 4 or 2; a lone shipper far from a large cluster ramps up sooner from 16.",
)
@option(
    "--flush-interval",
    type=click.FloatRange(0.01),
    default=1.0,
    show_default=True,
    metavar="SECONDS",
    help="Send a partial batch after this long at most (at once when no request is in flight).",
)
@option(
    "--max-line-bytes",
    type=SIZE(64),
    default="1MiB",
    show_default=True,
    help="Longer lines are shipped cut to this, tagged truncated.",
)
@option(
    "--scan-interval",
    type=click.FloatRange(0.05),
    default=1.0,
    show_default=True,
    metavar="SECONDS",
    help="How often the patterns are matched again (also while sending is blocked).",
)
@option(
    "--close-inactive",
    type=click.FloatRange(0.0),
    default=300.0,
    show_default=True,
    metavar="SECONDS",
    help="Close a finished file after this long idle; it is opened again when it grows.",
)
@option(
    "--max-open-files",
    type=click.IntRange(1),
    default=None,
    metavar="N",
    help="Descriptors held at most  [default: `ulimit -n` less 64]",
)
@option(
    "--shutdown-timeout",
    type=click.FloatRange(0.0),
    default=30.0,
    show_default=True,
    metavar="SECONDS",
    help="On SIGTERM/SIGINT, how long to deliver what was read (a second signal stops at once).",
)
@option(
    "--backoff-initial",
    type=click.FloatRange(0.001),
    default=0.5,
    show_default=True,
    metavar="SECONDS",
    help="First retry delay; doubles per failure, with jitter.",
)
@option(
    "--backoff-max",
    type=click.FloatRange(0.001),
    default=30.0,
    show_default=True,
    metavar="SECONDS",
    help="Longest retry delay.",
)
@option("--wait-for-files", is_flag=True, help="Start even when no file matches yet.")
@option("--metrics-addr", metavar="HOST:PORT", help="Serve Prometheus /metrics and /health here  [default: off]")
@option(
    "--health-stall-seconds",
    type=click.FloatRange(1.0),
    default=300.0,
    show_default=True,
    metavar="SECONDS",
    help="/health is 503 when nothing was delivered this long while lines wait.",
)
@option(
    "--health-failure-store-percent",
    type=click.FloatRange(0.0, 100.0),
    default=1.0,
    show_default=True,
    metavar="PERCENT",
    help="/health says degraded (still 200) when more than this share of the last 5 minutes' "
    "documents went to the failure store.",
)
@option(
    "--log-format",
    type=click.Choice(["auto", "json", "console"]),
    default="auto",
    show_default=True,
    help="The shipper's own logs on stderr: auto is console on a terminal, JSON otherwise.",
)
@click.option("-v", "--verbose", count=True, help="More of the shipper's own logs (-vv: everything).")
@click.option("-q", "--quiet", count=True, help="Fewer: warnings and errors only (-qq: errors).")
@version_option
@click.pass_context
def ship(ctx: click.Context, patterns: tuple[str, ...], verbose: int, quiet: int, **params: Any) -> None:
    """Follow the files matching PATTERNS (globs; ** matches subdirectories) and ship every
    complete line to Elasticsearch, exactly once, until SIGTERM or SIGINT.

    \b
    Examples:
      # see what would be shipped: the bulk requests on stdout, no cluster, no state written
      amebo-logship ship amebo.log --once --dry-run
      # backfill, then delete only what was shipped (exit 0 means every line is in)
      amebo-logship ship /var/log/amebo/old.log --once && rm /var/log/amebo/old.log
      # follow, with the API key in a file and metrics for Prometheus
      AMEBO_LOGSHIP_API_KEY_FILE=/run/secrets/es-key amebo-logship ship '/var/log/amebo/**/*.log' \\
          --es-url https://es.example.com:9200 --metrics-addr 0.0.0.0:9109
      # everything from a file
      amebo-logship ship --config /etc/amebo-logship.toml
    """
    from .report import LogStream, Progress, exit_code, summary_lines
    from .shipper import ShipOptions, Shipper

    dry_run, once = params["dry_run"], params["once"] or params["dry_run"]
    progress = Progress() if once and not dry_run and not quiet and sys.stderr.isatty() else None
    log = _own_logging(params["log_format"], verbose - quiet, LogStream(sys.stderr, progress))
    if params["data_stream"] and params["index"]:
        raise OperatorError(EXIT_CONFIG, "give --data-stream or --index, not both")
    for pattern in patterns:
        if os.path.isdir(os.path.expanduser(pattern)):
            raise OperatorError(
                EXIT_CONFIG,
                f"{pattern} is a directory: give a glob of the files in it, e.g. "
                f"'{pattern.rstrip('/')}/*.log' ('**/*.log' for subdirectories too)",
            )
    settings = build_connection(ctx, params)
    options = ShipOptions.from_params(list(patterns), params, where=settings.shown_urls())
    transports = _ship_client(settings, options, log, dry_run, is_index=bool(params["index"]))
    shipper = Shipper(options, transports, log, progress=progress)
    if params["metrics_addr"]:
        _serve_metrics(shipper, settings, params, log)

    def on_signal(signum: int, _frame: Any) -> None:
        shipper.request_stop(signum)  # (records it, no more: the loop logs and acts on it)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    log.info(
        "shipping_started",
        patterns=list(patterns),
        target=options.target,
        once=options.once,
        state_dir=str(options.state_dir),
        dry_run=dry_run,
    )
    log.debug("ship_options", **{k: str(v) for k, v in vars(options).items() if k != "patterns"})
    try:
        summary = shipper.run()
    finally:
        if progress is not None:
            progress.finish()
    snap = summary.snapshot
    d, r = snap.delivery, snap.read
    log.info(
        "shipping_stopped",
        lines=r.lines,
        delivered=d.delivered,
        duplicates=d.duplicates,
        dead_lettered=d.dead_lettered,
        failure_store=d.failure_store,
        parse_failures=r.parse_failures,
        truncated=r.truncated,
        empty_lines=r.empty,
        unsettled=summary.unsettled,
        left_bytes=summary.left_bytes,
        seconds=round(summary.seconds, 3),
        ended=summary.ended,
    )
    code = exit_code(summary, options.once)
    if options.once:
        click.echo("\n".join(summary_lines(summary)), err=dry_run)
    elif summary.fatal is not None or summary.state_error is not None:
        click.echo("\n".join(summary_lines(summary)[1:]), err=True)
    sys.exit(code)


def _ship_client(
    settings: ConnectionSettings, options: Any, log: Any, dry_run: bool, *, is_index: bool
) -> Callable[[], Any]:
    """What makes the transports ``ship`` sends with, after the preflight: what ``check``
    asks, asked of any node that answers first (the ones that do not are a warning)."""
    from .checks import live_cluster, preflight, target_problem

    problem = target_problem(options.target, is_index=is_index)
    if problem is not None:
        raise OperatorError(EXIT_CONFIG, f"{problem}: choose another --{'index' if is_index else 'data-stream'}")
    if dry_run:
        from .dryrun import ConsoleTransport

        console = ConsoleTransport()
        return lambda: console
    from .transport import ElasticsearchTransport

    validate(settings)  # before anything is asked
    found = live_cluster(settings)
    for url, reason in found.down:
        log.warning(
            "elasticsearch_node_down",
            **{"url.full": url},
            reason=reason,
            action="skipped until it answers; the other nodes take its requests",
        )
    answer = found.answer
    meaning = explain(answer, found.settings)
    if not meaning.ok:
        if not meaning.retry:
            raise OperatorError(meaning.exit_code, meaning.message)
        log.warning(
            "elasticsearch_unreachable",
            reason=meaning.message,
            action=f"shipping waits for it{' up to --give-up-after' if options.once else ''}",
        )
    else:
        log.info("elasticsearch_reachable", version=answer.version, **{"url.full": found.settings.shown_urls()})
        try:
            for result in preflight(found.node, found.settings, options.target, is_index=is_index, answer=answer):
                if not result.ok:
                    raise OperatorError(result.exit_code, f"{result.name}: {result.detail}")
                if result.warning:
                    log.warning("preflight_warning", check=result.name, reason=result.detail)
        finally:
            found.node.close()
    return lambda: ElasticsearchTransport(settings)


def _serve_metrics(shipper: Any, settings: ConnectionSettings, params: dict[str, Any], log: Any) -> None:
    from .monitor import MonitorServer

    host, port = _parse_addr(params["metrics_addr"])
    try:
        monitor = MonitorServer(
            shipper,
            settings,
            host,
            port,
            stall_seconds=params["health_stall_seconds"],
            failure_store_percent=params["health_failure_store_percent"],
        ).start()
    except OSError as exc:
        shipper.close()
        raise OperatorError(
            EXIT_CONFIG, f"cannot serve metrics on {params['metrics_addr']}: {exc.strerror or exc}"
        ) from None
    bound_host, bound_port = monitor.address[:2]
    log.info(
        "monitor_listening",
        **{"url.full": f"http://{_host_for_url(str(bound_host))}:{bound_port}/metrics"},
        port=bound_port,
    )


@main.command(context_settings=CONTEXT, epilog=PRECEDENCE)
@config_option("status")
@state_dir_option
@option("--json", "as_json", is_flag=True, help="One JSON array, for scripts.")
@version_option
def status(state_dir: Path, as_json: bool) -> None:
    """Every tracked file (identity, shipped offset, size now, lag, last delivery), and the
    documents settled each way since the state was created: delivered, already there, kept
    in the data stream's failure store, dead-lettered.  Safe to run while a shipper runs.

    \b
    Examples:
      amebo-logship status
      amebo-logship status --state-dir /var/lib/amebo-logship --json | jq '.files[] | select(.lag_bytes > 0)'
      amebo-logship status --json | jq '.totals.failure_store'
    """
    from .status import empty_totals, render_shipping, render_table, render_totals, state_status

    try:
        found = state_status(state_dir)
    except StateError as exc:
        if exc.kind != "missing":
            raise
        if not as_json:
            click.echo(f"no files tracked in {state_dir}: nothing has been shipped with this --state-dir")
            return
        found = {"files": [], "totals": empty_totals(), "shipping": None}
    if as_json:
        import orjson

        click.echo(orjson.dumps(found).decode())
    else:
        click.echo(render_table(found["files"]))
        if found["shipping"] is not None:
            click.echo(render_shipping(found["shipping"]))
        click.echo(render_totals(found["totals"]))


@main.command(context_settings=CONTEXT, epilog=PRECEDENCE)
@config_option("check")
@connection_options
@target_options
@version_option
@click.pass_context
def check(ctx: click.Context, **params: Any) -> None:
    """Check that shipping would work: connection, TLS, credentials, version, target, privileges;
    then, for an existing target, the last day's documents in the failure store and with
    ignored fields (warnings).

    Prints one line per check; each problem says what to do.  Exits 0 only when all pass
    (3 for a connection or set-up problem, 4 for credentials or privileges); warnings do
    not fail it.

    \b
    Examples:
      amebo-logship check --es-url https://es.example.com:9200 --api-key-file /run/secrets/es-key
      AMEBO_LOGSHIP_ES_URL=http://localhost:9200 amebo-logship check --data-stream logs-amebo-prod
    """
    from .checks import CheckResult, live_cluster, run_checks

    if params["data_stream"] and params["index"]:
        raise OperatorError(EXIT_CONFIG, "give --data-stream or --index, not both")
    settings = build_connection(ctx, params)
    validate(settings)  # before anything is asked
    found = live_cluster(settings)
    target = params["index"] or params["data_stream"] or "logs-amebo-default"
    code = 0
    results = [
        CheckResult("node", True, f"{url} is unreachable ({why}): shipping skips it while others answer", warning=True)
        for url, why in found.down
        if found.answer.problem != "unreachable"
    ]
    checks = run_checks(
        found.node, found.settings, target, is_index=bool(params["index"]), quality=True, answer=found.answer
    )
    for result in [*results, *checks]:
        mark = "ok  " if result.ok and not result.warning else ("warn" if result.ok else "FAIL")
        click.echo(f"{mark}  {result.name}: {result.detail}")
        if not result.ok and code == 0:
            code = result.exit_code
    sys.exit(code)


@main.command(context_settings=CONTEXT, epilog=PRECEDENCE)
@config_option("setup")
@connection_options
@option("--kibana-url", metavar="URL", help="Also import the Kibana objects (data view, searches, dashboard) here.")
@option(
    "--ilm-delete-after",
    default="90d",
    show_default=True,
    metavar="AGE",
    help="Delete backing indices this long after they roll over (Elasticsearch time units: 90d, 12h, ...).",
)
@option(
    "--failure-store/--no-failure-store",
    default=True,
    show_default=True,
    help="Keep documents Elasticsearch cannot index in logs-amebo-*::failures (8.19, 9.1+), or refuse them "
    "(the shipper then dead-letters them).",
)
@version_option
@click.pass_context
def setup(
    ctx: click.Context, kibana_url: str | None, ilm_delete_after: str, failure_store: bool, **params: Any
) -> None:
    """Install the ILM policy and index templates (and, with --kibana-url, the Kibana objects).

    Idempotent: prints, per object, whether it was created, updated or left unchanged, then
    where documents Elasticsearch cannot index go (the failure store, or refused).  Needs the
    manage_ilm and manage_index_templates cluster privileges (and manage on logs-amebo-* to
    set the failure store of existing data streams).

    \b
    Examples:
      amebo-logship setup --es-url https://es.example.com:9200 --username elastic --password-file pw
      amebo-logship setup --es-url http://localhost:9200 --kibana-url http://localhost:5601 --ilm-delete-after 30d
    """
    from elasticsearch import ApiError, AuthenticationException, TransportError

    from . import elastic_setup, kibana
    from .http import auth_headers

    if not _TIME_UNIT.match(ilm_delete_after):
        raise OperatorError(
            EXIT_CONFIG,
            f"--ilm-delete-after {ilm_delete_after!r} is not an Elasticsearch time "
            "value: use a number and a unit, e.g. 90d, 12h, 30m",
        )
    logging.getLogger("elastic_transport").setLevel(logging.CRITICAL)
    settings = build_connection(ctx, params)
    client = make_client(settings)
    try:
        version = str(client.info()["version"]["number"])
        elastic_setup.apply(
            client,
            ilm_delete_after,
            report=lambda c: click.echo(f"{c.action:9}  {c.kind} {c.name}"),
            failure_store=failure_store,
            version=version,
        )
        click.echo(elastic_setup.failure_store_stance(version, failure_store))
    except AuthenticationException:
        raise OperatorError(EXIT_AUTH, _cluster_problem(settings)) from None
    except ApiError as exc:
        hint = (
            ": the user needs the manage_ilm and manage_index_templates cluster privileges"
            if exc.status_code == 403
            else ""
        )
        raise OperatorError(
            EXIT_AUTH if exc.status_code == 403 else EXIT_CONFIG,
            f"Elasticsearch refused the set-up (HTTP {exc.status_code}: {_reason(exc)}){hint}",
        ) from None
    except TransportError:
        raise OperatorError(EXIT_CONFIG, _cluster_problem(settings)) from None
    if kibana_url:
        try:
            answer = kibana.import_objects(
                kibana_url,
                kibana.ndjson().encode(),
                headers=auth_headers(settings),
                ca_certs=settings.ca_certs,
                verify=not settings.insecure,
            )
        except PermissionError as exc:
            raise OperatorError(EXIT_AUTH, str(exc)) from None
        except RuntimeError as exc:
            raise OperatorError(EXIT_CONFIG, str(exc)) from None
        click.echo(f"imported   {answer.get('successCount', 0)} Kibana saved objects into {kibana_url}")


def _reason(exc: Any) -> str:
    body = getattr(exc, "body", None)
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        return str(body["error"].get("reason") or body["error"].get("type"))
    return str(exc.message)


def _cluster_problem(settings: ConnectionSettings) -> str:
    """What is wrong with the cluster of *settings*, as ``check`` would say it."""
    from .checks import live_cluster

    found = live_cluster(settings)
    found.node.close()
    return explain(found.answer, found.settings).message


@main.command("reset-state", context_settings=CONTEXT, epilog=PRECEDENCE)
@config_option("reset-state")
@state_dir_option
@click.option("-y", "--yes", is_flag=True, help="Do not ask for confirmation.")
@version_option
def reset_state_command(state_dir: Path, yes: bool) -> None:
    """Forget every offset (after a lost or corrupt database): every file is shipped again.

    Lines shipped before are skipped as duplicates while their documents are in the same
    backing index; after a rollover they would be indexed again.  Refused while a shipper
    uses the directory.

    \b
    Examples:
      amebo-logship reset-state --state-dir /var/lib/amebo-logship
      amebo-logship reset-state --state-dir /var/lib/amebo-logship --yes
    """
    from .state import DB_NAME, MARKER, reset_state

    if not any((state_dir / name).exists() for name in (DB_NAME, MARKER)):
        click.echo(f"nothing to reset: no offsets in {state_dir}")
        return
    if not yes:
        try:
            answer = click.confirm(
                f"Forget every offset in {state_dir}? Every file will be shipped again from its start", default=False
            )
        except click.exceptions.Abort:
            if sys.stdin is not None and sys.stdin.isatty():
                raise  # Ctrl-C or Ctrl-D at the prompt: interrupted
            raise OperatorError(
                EXIT_CONFIG,
                "reset-state asks before forgetting the offsets, and no terminal answered: "
                "pass --yes to reset without asking",
            ) from None
        if not answer:
            click.echo("nothing was reset")
            return
    reset_state(state_dir)
    click.echo(f"offsets in {state_dir} were reset: the next run ships every file from its start")


def _parse_addr(value: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[::1]:9100`` for IPv6) -> (host, port)."""
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or int(port) > 65535:
        raise OperatorError(EXIT_CONFIG, f"--metrics-addr {value!r} is not HOST:PORT, e.g. 127.0.0.1:9109")
    return host.strip("[]") or "0.0.0.0", int(port)


def _host_for_url(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def run() -> NoReturn:
    """Console-script entry: every outcome mapped to the exit-code table; a traceback only for
    a bug (exit 1, with "please report it")."""
    _without_rich()
    try:
        _run()
    except SystemExit as exc:
        code = exc.code
    else:
        code = 0
    if isinstance(code, str):  # (sys.exit("message"), as Python prints it)
        click.echo(code, err=True)
        code = EXIT_FAILURE
    _leave(code or 0)


def _without_rich() -> None:
    """Keep rich out of this process: structlog imports it (and pygments) whenever it is
    installed (Amebo's own dependencies install it), for pretty tracebacks this command never
    renders (its console lines use plain ones), at 80 ms of every start and 5 MB of memory
    for good.  Only where nothing has imported rich yet: the console script, not a program
    that imports this module."""
    if "structlog" not in sys.modules:
        sys.modules.setdefault("rich", None)  # type: ignore[arg-type]  # (None: "import rich" fails)


def _leave(code: int) -> NoReturn:
    """Exit with *code* without the interpreter's teardown: by now every file and connection
    is closed (the state store and dead letters by the command, log lines are written whole
    as they are made), and freeing every object a run made, one by one, took 70-160 ms of a
    1,000,000-line ``--once`` run (measured: 7-20 ms from its last log line to its exit this
    way).  What the streams still buffer is flushed first."""
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a reader that went away, a closed stream: nothing to keep
            pass
    logging.shutdown()
    os._exit(code)


def _run() -> None:
    try:
        main(standalone_mode=False, prog_name="amebo-logship")
    except click.exceptions.Abort:
        click.echo("amebo-logship: interrupted", err=True)
        sys.exit(130)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.ClickException as exc:  # usage errors: exit 2, with click's own text
        exc.show()
        sys.exit(exc.exit_code)
    except OperatorError as exc:
        _fail(exc.exit_code, exc.message)
    except StateError as exc:
        _fail(EXIT_STATE, str(exc))
    except KeyboardInterrupt:
        click.echo("amebo-logship: interrupted", err=True)
        sys.exit(130)
    except SystemExit:
        raise
    except Exception as exc:
        from ..logger import get_logger

        get_logger("amebo.logship").exception("internal_error")
        click.echo(f"amebo-logship: internal error: {type(exc).__name__}: {exc} (a bug: please report it)", err=True)
        sys.exit(EXIT_FAILURE)
