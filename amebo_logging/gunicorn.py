"""A gunicorn configuration for Amebo with amebo-logging: every line a whole record.

::

    gunicorn -c python:amebo_logging.gunicorn -w 3 amebo_logging.amebo:app

What it sets (anything given on the command line or in ``GUNICORN_CMD_ARGS`` wins):

* ``bind`` on Amebo's address, ``AMEBO_HOST`` and ``AMEBO_PORT`` (default ``0.0.0.0:3310``),
  and uvicorn's worker class (from ``uvicorn-worker``, else ``uvicorn.workers``);
* ``logconfig_dict``: gunicorn's own lines, master's and workers' ("Starting gunicorn",
  "Booting worker with pid", "Worker exiting") are records of ``gunicorn.error``, built
  by :func:`amebo_logging.configure_logging` as every other record (``AMEBO_LOG_*`` apply);
  ``gunicorn.access`` writes nothing: the middleware writes the one access record;
* the hooks that give each worker pipes of its own, relayed whole by one thread of the
  master (:mod:`amebo_logging.relay`): no record is torn on the stdout pipe the workers
  share, whatever its size, and any line that is not a record becomes one;
* ``PROMETHEUS_MULTIPROC_DIR`` (a new temporary directory unless set; wiped at start), so a
  scrape of ``/metrics`` on any worker sums every worker's counts (:mod:`amebo_logging.metrics`).

To add hooks of your own, import these in your config and call them from yours::

    from amebo_logging.gunicorn import *  # noqa: F403
    from amebo_logging import gunicorn as amebo_gunicorn

    def post_fork(server, worker):
        amebo_gunicorn.post_fork(server, worker)
        ...  # yours
"""

from __future__ import annotations

import glob
import logging
import os
import shutil
import tempfile
from importlib.util import find_spec
from typing import Any

from .relay import Pipes, Relay

# prometheus-client's multiprocess mode: the workers' counts summed at every scrape.  Set
# before anything imports prometheus_client (its value class is chosen at import).
_metrics_dir_owned = not os.environ.get("PROMETHEUS_MULTIPROC_DIR")
if _metrics_dir_owned:
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="amebo-metrics-")

__all__ = [
    "bind",
    "child_exit",
    "ecs_handler",
    "logconfig_dict",
    "on_exit",
    "on_starting",
    "post_fork",
    "pre_fork",
    "worker_class",
]

bind = [f"{os.environ.get('AMEBO_HOST') or '0.0.0.0'}:{os.environ.get('AMEBO_PORT') or 3310}"]
worker_class = (
    "uvicorn_worker.UvicornWorker" if find_spec("uvicorn_worker") is not None else "uvicorn.workers.UvicornWorker"
)
accesslog = None

logconfig_dict: dict[str, Any] = {
    "version": 1,
    "disable_existing_loggers": False,
    "root": {"level": "INFO", "handlers": ["ecs"]},
    "loggers": {
        "gunicorn.error": {"level": "INFO", "handlers": ["ecs"], "propagate": False},
        "gunicorn.access": {"level": "INFO", "handlers": [], "propagate": False},
    },
    "handlers": {"ecs": {"()": "amebo_logging.gunicorn.ecs_handler"}},
    "formatters": {},
}

_ATTR = "_amebo_logging_pipes"
_relay: Relay | None = None


def ecs_handler() -> logging.Handler:
    """The handler of gunicorn's loggers: :func:`~amebo_logging.configure_logging`'s own,
    so the master's records are built and written like the workers'."""
    from .config import configure_logging
    from .runtime import current
    from .stdlib import EcsHandler, EcsJsonFormatter

    configure_logging()
    return EcsHandler(EcsJsonFormatter(current().details["render"]))


def on_starting(server: Any) -> None:
    """The master, before its first fork: start the relay."""
    global _relay
    from .render import ConsoleRenderer
    from .runtime import current

    for stale in glob.glob(os.path.join(os.environ["PROMETHEUS_MULTIPROC_DIR"], "*.db")):
        os.remove(stale)  # a previous run's counts
    if _relay is None:
        # console lines are for people: passed through as they are
        _relay = Relay(wrap_text=not isinstance(current().details.get("render"), ConsoleRenderer))
        _relay.start()
        _relay.capture()


def pre_fork(server: Any, worker: Any) -> None:
    """The master, before forking *worker*: its own pipes."""
    if _relay is not None:
        setattr(worker, _ATTR, _relay.open_pipes())


def post_fork(server: Any, worker: Any) -> None:
    """The new worker: its stdout and stderr are its pipes."""
    pipes: Pipes | None = getattr(worker, _ATTR, None)
    if _relay is not None and pipes is not None:
        _relay.adopt(pipes)


def child_exit(server: Any, worker: Any) -> None:
    """The master, once *worker* has exited: the relay drains its pipes to their end, and
    its metrics are marked dead (its counts stay in the totals)."""
    pipes: Pipes | None = getattr(worker, _ATTR, None)
    if _relay is not None and pipes is not None:
        _relay.close_pipes(pipes)
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)


def on_exit(server: Any) -> None:
    """The master, last: what the pipes still hold is written, then stdout is its own again."""
    global _relay
    if _relay is not None:
        _relay.stop()
        _relay = None
    if _metrics_dir_owned:
        shutil.rmtree(os.environ["PROMETHEUS_MULTIPROC_DIR"], ignore_errors=True)
