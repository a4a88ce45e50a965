"""Operator errors: one clear line and a documented exit code, never a traceback."""

from __future__ import annotations

from typing import Final

__all__ = ["EXIT_AUTH", "EXIT_CONFIG", "EXIT_FAILURE", "EXIT_OK", "EXIT_STATE", "EXIT_USAGE", "OperatorError"]

EXIT_OK: Final = 0
EXIT_FAILURE: Final = 1  # an unexpected internal error (a bug: please report it)
EXIT_USAGE: Final = 2  # a malformed command line (click's own code)
EXIT_CONFIG: Final = 3  # bad URL, no files matched, unreadable file or dead-letter path, not Elasticsearch
EXIT_AUTH: Final = 4  # Elasticsearch refused the credentials
EXIT_STATE: Final = 5  # the state directory or offsets database cannot be used


class OperatorError(Exception):
    """Something the person running the command can fix; the message says how."""

    def __init__(self, exit_code: int, message: str) -> None:
        super().__init__(message)
        self.exit_code = exit_code
        self.message = message
