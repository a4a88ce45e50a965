"""amebo_logging: ECS JSON records for Amebo, from structlog and the stdlib alike.

from amebo_logging import configure_logging, get_logger

configure_logging()                       # AMEBO_LOG_LEVEL, AMEBO_LOG_FORMAT, AMEBO_LOG_FILE
log = get_logger("amebo.gists")
log.info("cache_warmed", entries=1200, took_ms=41.5)
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from . import events, schema
    from .asgi import CorrelationMiddleware
    from .config import (
        LoggingConfig,
        Settings,
        configure_logging,
        install,
        reopen_log_file,
        resolve_settings,
        uvicorn_log_config,
    )
    from .correlation import (
        TraceContext,
        clear_context,
        correlation_scope,
        get_correlation_id,
        get_trace_context,
        new_correlation_id,
        parse_traceparent,
        set_correlation_id,
        set_trace_context,
        unbind_context,
        with_current_context,
    )
    from .logger import AmeboLogger, bind_context, get_logger
    from .outbound import async_httpx_event_hooks, httpx_event_hooks
    from .ship.handler import ElasticsearchHandler
    from .sink import write_failures

# Where each name lives: a name is imported when it is first asked for, so importing a module
# of the package (amebo_logging.ship.cli, amebo_logging.gunicorn...) loads only what that
# module needs (structlog, say, is not loaded by `amebo-logship --version`; the Elasticsearch
# client only with ElasticsearchHandler).
_WHERE = {
    "events": "",
    "schema": "",
    "CorrelationMiddleware": "asgi",
    **dict.fromkeys(
        (
            "LoggingConfig",
            "Settings",
            "configure_logging",
            "install",
            "reopen_log_file",
            "resolve_settings",
            "uvicorn_log_config",
        ),
        "config",
    ),
    **dict.fromkeys(
        (
            "TraceContext",
            "clear_context",
            "correlation_scope",
            "get_correlation_id",
            "get_trace_context",
            "new_correlation_id",
            "parse_traceparent",
            "set_correlation_id",
            "set_trace_context",
            "unbind_context",
            "with_current_context",
        ),
        "correlation",
    ),
    **dict.fromkeys(("AmeboLogger", "bind_context", "get_logger"), "logger"),
    **dict.fromkeys(("async_httpx_event_hooks", "httpx_event_hooks"), "outbound"),
    "ElasticsearchHandler": "ship.handler",
    "write_failures": "sink",
}


def __getattr__(name: str) -> object:
    where = _WHERE.get(name)
    if where is None:
        raise AttributeError(f"module 'amebo_logging' has no attribute {name!r}")
    if where == "":  # a submodule
        return importlib.import_module(f"{__name__}.{name}")
    value = getattr(importlib.import_module(f"{__name__}.{where}"), name)
    globals()[name] = value  # (asked for once)
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_WHERE})


__all__ = [
    "AmeboLogger",
    "CorrelationMiddleware",
    "ElasticsearchHandler",
    "LoggingConfig",
    "Settings",
    "TraceContext",
    "async_httpx_event_hooks",
    "bind_context",
    "clear_context",
    "configure_logging",
    "correlation_scope",
    "events",
    "get_correlation_id",
    "get_logger",
    "get_trace_context",
    "httpx_event_hooks",
    "install",
    "new_correlation_id",
    "parse_traceparent",
    "reopen_log_file",
    "resolve_settings",
    "schema",
    "set_correlation_id",
    "set_trace_context",
    "unbind_context",
    "uvicorn_log_config",
    "with_current_context",
    "write_failures",
]
