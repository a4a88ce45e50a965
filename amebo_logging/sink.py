"""Writing rendered lines: one ``write()`` call per record, failures counted, never raised.

One ``write()`` per complete line is what keeps lines whole when several processes append
to one file: for a file opened with ``O_APPEND`` (``AMEBO_LOG_FILE``) each record is one
``os.write`` system call.  A write that fails (closed stream, ``EPIPE``, ``ENOSPC``) is
counted and reported once on stderr; the application never sees it.
"""

from __future__ import annotations

import io
import os
import sys
import threading
from collections.abc import Callable
from typing import IO, Any

__all__ = ["LineSink", "write_failures"]

_failures = 0
_reported = False
_failure_lock = threading.Lock()


def write_failures() -> int:
    """How many records could not be written since the process started."""
    return _failures


def _record_failure(target: str, exc: BaseException) -> None:
    global _failures, _reported
    with _failure_lock:
        _failures += 1
        first = not _reported
        _reported = True
    if first:
        try:
            stderr = sys.__stderr__ or sys.stderr
            stderr.write(
                f"amebo_logging: could not write a log record to {target} "
                f"({type(exc).__name__}: {exc}); later failures are only counted: "
                "see amebo_logging.write_failures()\n"
            )
            stderr.flush()
        except Exception:
            pass


def _write_all(fd: int, line: bytes) -> None:
    """One ``os.write`` for the line; more only if the kernel took part of it (a signal,
    a full disk), to finish that same line."""
    written = os.write(fd, line)
    if written != len(line):
        _write_rest(fd, memoryview(line)[written:])


def _write_rest(fd: int, view: memoryview) -> None:
    while view:
        view = view[os.write(fd, view) :]


class LineSink:
    """Writes complete lines (bytes ending in a newline) to a file descriptor or a stream.

    * ``LineSink.open_file(path)`` appends with ``O_APPEND``: one ``os.write`` per line.
    * A stream with a file descriptor (stdout, an open file) gets one ``os.write`` per line,
      after the stream's own buffers are flushed.
    * A binary stream gets ``write(line)`` then ``flush()``.
    * A text stream with a ``buffer`` (``sys.stdout``) is written through its buffer.
    * Any other text stream (``io.StringIO``) gets the decoded line.
    """

    __slots__ = ("_fd", "_lock", "_owns_fd", "name", "write")

    def __init__(self, stream: IO[Any]) -> None:
        self.name: str = str(getattr(stream, "name", None) or type(stream).__name__)
        self._fd: int | None = None
        self._owns_fd = False
        self._lock = threading.Lock()
        self.write: Callable[[bytes], None] = self._pick_writer(stream)

    @classmethod
    def open_file(cls, path: str | os.PathLike[str]) -> LineSink:
        """A sink appending to *path*, created (mode 0640) when missing.

        Raises :class:`OSError` with the path when the file cannot be opened.
        """
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o640)
        sink = cls.__new__(cls)
        sink.name = os.fspath(path)
        sink._fd = fd
        sink._owns_fd = True
        sink._lock = threading.Lock()
        sink.write = sink._write_fd
        return sink

    def _pick_writer(self, stream: IO[Any]) -> Callable[[bytes], None]:
        try:
            fd = stream.fileno()
        except (AttributeError, OSError, ValueError):  # io.UnsupportedOperation is an OSError
            fd = None
        if fd is not None:
            return self._make_fd_writer(fd, stream)
        if isinstance(stream, io.TextIOBase) or hasattr(stream, "encoding"):
            buffer = getattr(stream, "buffer", None)
            if buffer is not None and hasattr(buffer, "write"):
                return self._make_binary_writer(buffer, text_layer=stream)
            return self._make_text_writer(stream)
        return self._make_binary_writer(stream, text_layer=None)

    def _make_fd_writer(self, fd: int, stream: IO[Any]) -> Callable[[bytes], None]:
        """Lines go straight to the descriptor: one ``os.write`` each.  Whatever others left
        in the stream's buffers (``print()``) is flushed first, so the order holds."""
        flush, os_write, name = stream.flush, os.write, self.name

        def write_fd(line: bytes) -> None:
            try:
                flush()
                written = os_write(fd, line)
                if written != len(line):
                    _write_rest(fd, memoryview(line)[written:])
            except (OSError, ValueError) as exc:
                _record_failure(name, exc)

        return write_fd

    def _make_binary_writer(self, stream: IO[bytes], text_layer: IO[str] | None) -> Callable[[bytes], None]:
        write, flush, name = stream.write, stream.flush, self.name

        def write_binary(line: bytes) -> None:
            try:
                if text_layer is not None:
                    # Anything print() left in the text layer goes first, so ordering holds.
                    text_layer.flush()
                write(line)
                flush()
            except (OSError, ValueError) as exc:
                _record_failure(name, exc)

        return write_binary

    def _make_text_writer(self, stream: IO[str]) -> Callable[[bytes], None]:
        lock, name = self._lock, self.name

        def write_text(line: bytes) -> None:
            try:
                text = line.decode("utf-8")
                with lock:
                    stream.write(text)
                    stream.flush()
            except (OSError, ValueError) as exc:
                _record_failure(name, exc)

        return write_text

    def _write_fd(self, line: bytes) -> None:
        try:
            if self._fd is None:
                raise ValueError("the log file was closed")
            _write_all(self._fd, line)
        except (OSError, ValueError) as exc:
            _record_failure(self.name, exc)

    def close(self) -> None:
        """Close the file this sink opened itself; streams handed to it are left open."""
        if self._owns_fd and self._fd is not None:
            fd, self._fd = self._fd, None
            try:
                os.close(fd)
            except OSError:
                pass
