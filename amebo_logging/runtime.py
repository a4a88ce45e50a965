"""The runtime in force: one frozen object, replaced in a single assignment.

:func:`amebo_logging.configure_logging` builds a :class:`Runtime` (the level, the record
builder, the redactor, the renderer and the sink) and :func:`swap` puts it in force.  Every
logging call reads :func:`current` once and uses that object throughout, so a thread logging
while another reconfigures writes a whole record with the old runtime or with the new one,
never a mix.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from .record import Builder
from .redaction import Redactor
from .sink import LineSink

__all__ = ["Runtime", "current", "swap"]

Processor = Callable[[Any, str, Any], Any]


@dataclass(frozen=True)
class Runtime:
    """Everything a record needs once it is made."""

    level: int
    builder: Builder
    redactor: Redactor
    emit: Callable[[Mapping[str, Any]], None]  # render and write one record
    processors: tuple[Processor, ...] = ()
    sink: LineSink | None = None
    owns_sink: bool = False
    details: Mapping[str, Any] = field(default_factory=dict)  # what configure_logging() reports back


def _silent(_record: Mapping[str, Any]) -> None:
    return None


def _unconfigured() -> Runtime:
    service = {"service.name": "amebo", "service.version": "unknown", "service.environment": "production"}
    redactor = Redactor()
    return Runtime(
        level=logging.INFO, builder=Builder(service, redactor.scrub_mapping), redactor=redactor, emit=_silent
    )


_current: Runtime = _unconfigured()


def current() -> Runtime:
    """The runtime in force (before any configuration: one that writes nothing)."""
    return _current


def swap(new: Runtime) -> Runtime:
    """Put *new* in force; returns the one it replaced."""
    global _current
    old, _current = _current, new
    return old


def _after_fork_in_child() -> None:
    # The pid is part of every record's constant fields: a forked worker gets its own.
    global _current
    _current = replace(_current, builder=_current.builder.for_child())


os.register_at_fork(after_in_child=_after_fork_in_child)
