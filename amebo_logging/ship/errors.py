"""Operator errors and the exit-code table: one clear line and a documented code, never a traceback.

| code | meaning |
|---|---|
| 0 | done (``--once``: every complete line shipped or dead-lettered), or stopped by a signal (following) |
| 1 | an internal error: a bug, please report it |
| 2 | a malformed command line (click's own usage errors) |
| 3 | configuration: a bad option or variable, no files match, the target is refused, not Elasticsearch, TLS |
| 4 | credentials or privileges refused by Elasticsearch |
| 5 | state and permissions: the state directory or database (corrupt, locked, disk full), unreadable log files |
| 6 | unfinished: Elasticsearch accepted nothing for ``--give-up-after`` seconds (nothing lost: run again) |
| 130, 143 | ``--once`` interrupted by SIGINT or SIGTERM with lines left to ship (run again to resume) |
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

__all__ = [
    "EXIT_AUTH",
    "EXIT_CODES",
    "EXIT_CONFIG",
    "EXIT_FAILURE",
    "EXIT_OK",
    "EXIT_STATE",
    "EXIT_UNFINISHED",
    "EXIT_USAGE",
    "Crashed",
    "OperatorError",
]

EXIT_OK: Final = 0
EXIT_FAILURE: Final = 1  # an unexpected internal error (a bug: please report it)
EXIT_USAGE: Final = 2  # a malformed command line (click's own code)
EXIT_CONFIG: Final = 3  # configuration: bad option or variable, no files match, target refused, not Elasticsearch
EXIT_AUTH: Final = 4  # Elasticsearch refused the credentials or the privileges
EXIT_STATE: Final = 5  # the state directory or database cannot be used; log files cannot be read
EXIT_UNFINISHED: Final = 6  # --once: Elasticsearch accepted nothing for --give-up-after seconds

#: The table, as ``amebo-logship --help`` prints it.
EXIT_CODES: Final = (
    (0, "done; or stopped by SIGTERM/SIGINT while following"),
    (1, "internal error (a bug: please report it)"),
    (2, "malformed command line"),
    (3, "configuration: bad option or variable, no files match, target refused, not Elasticsearch, TLS"),
    (4, "Elasticsearch refused the credentials or privileges"),
    (5, "state directory or database unusable (corrupt, locked, disk full); log files unreadable"),
    (6, "--once: Elasticsearch accepted nothing for --give-up-after seconds (run again to resume)"),
    (130, "--once interrupted by SIGINT with lines left (143: SIGTERM); run again to resume"),
)


@dataclass(frozen=True, slots=True)
class Crashed:
    """A shipping thread (*thread*: ``sending``, ``packing``) stopped on a bug, logged as the
    *event* record; the loop that gets this value stops the run (exit 1)."""

    error: BaseException
    thread: str
    event: str

    @property
    def message(self) -> str:
        return f"a {self.thread} thread stopped unexpectedly (see the {self.event} record)"


class OperatorError(Exception):
    """Something the person running the command can fix; the message says how."""

    def __init__(self, exit_code: int, message: str) -> None:
        super().__init__(message)
        self.exit_code = exit_code
        self.message = message
