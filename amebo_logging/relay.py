"""One writer per stream: the lines of several processes relayed whole, as records.

Under gunicorn every worker inherits the master's stdout, and in a container that stdout is
a pipe the runtime reads.  A ``write()`` to a pipe is atomic only up to ``PIPE_BUF`` (4096
bytes): a longer record (a 6 KB User-Agent, a traceback) is cut by the kernel wherever the
pipe fills, and another process's line lands in the middle.  A lock between the processes
would have to be taken by every write, small ones included (an unlocked 100-byte record
still lands inside a locked 10 KB one), costing each record two more system calls, and a
worker killed while holding it would stall the rest.

So each process gets pipes of its own (stdout and stderr), and one thread of the master, the
:class:`Relay`, is the only writer of the real streams: it reads whole lines from every pipe
and writes each one with a single loop of ``write()`` calls that nothing else interleaves.
Along the way:

* a line that is a JSON object (a record) passes through byte for byte;
* any other line (a C library's message, a ``print()`` before logging is configured, a
  traceback the interpreter writes at exit) becomes a record: ``message`` the line, ``stream``
  the stream it came on, ``process.pid`` its writer's, level ``info`` on stdout and ``error``
  on stderr, with ``log.logger`` ``amebo_logging.relay``;
* the unfinished last line of a process that died mid-write becomes a record tagged
  ``truncated`` (all its bytes in ``message``): nothing is dropped without a record saying so.

Workers write to their own pipe exactly as before (one ``write()`` per record, no added
system call); the relay costs one read and one write per batch of lines in the master.
"""

from __future__ import annotations

import os
import queue
import selectors
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Final, NamedTuple

import orjson

from .render import render_json, timestamp_now
from .runtime import current

__all__ = ["Pipes", "Relay"]

#: The first line a child writes on each of its pipes, so the relay knows its pid.
_HELLO: Final = b"\x00amebo-logging-relay pid="
_LOGGER: Final = "amebo_logging.relay"
#: A line longer than this without a newline is written out in pieces, each a record tagged
#: ``truncated``: the relay's memory stays bounded whatever a process writes.
MAX_LINE_BYTES: Final = 16 * 1024 * 1024
_READ: Final = 1 << 16


class Pipes(NamedTuple):
    """The write ends of one child's pipes (stdout, stderr)."""

    out: int
    err: int


@dataclass
class _Stream:
    """One pipe's read end, as the relay thread alone sees it."""

    stream: str  # "stdout" or "stderr": the real stream its lines go to
    pid: int | None  # the writer's, once known
    buffer: bytearray = field(default_factory=bytearray)


class Relay:
    """Relays the lines of this process and its children to the real stdout and stderr.

    The master calls, from its main thread: :meth:`start`, then :meth:`capture` (this
    process's own fd 1 and 2 then write into the relay), :meth:`open_pipes` before each fork,
    :meth:`close_pipes` once that child has exited, and :meth:`stop` at exit.  A forked child
    calls :meth:`adopt` with its pipes, first thing.  The relay thread alone reads the pipes
    and writes the real streams (*stdout_fd* and *stderr_fd*, duplicated here).
    """

    def __init__(self, stdout_fd: int = 1, stderr_fd: int = 2, *, wrap_text: bool = True) -> None:
        self.wrap_text = wrap_text
        self._real = {"stdout": os.dup(stdout_fd), "stderr": os.dup(stderr_fd)}
        self._wake_r, self._wake_w = os.pipe()
        self._inbox: queue.SimpleQueue[tuple[int, str, int | None] | float] = queue.SimpleQueue()
        # every descriptor of the relay a forked child inherits and must close (main thread only)
        self._inherited: set[int] = {*self._real.values(), self._wake_r, self._wake_w}
        self._own: Pipes | None = None
        self._thread = threading.Thread(target=self._run, name="amebo-logging-relay", daemon=True)
        self.failures = 0  # lines the real streams refused (relay thread only)

    # --- the master's side (main thread) ---------------------------------------------------

    def start(self) -> None:
        """Start the relay thread."""
        self._thread.start()

    def capture(self) -> None:
        """Route this process's own stdout and stderr (fd 1 and 2) through the relay."""
        own = self._pipes(os.getpid())
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(own.out, 1)
        os.dup2(own.err, 2)
        os.close(own.out)
        os.close(own.err)
        self._inherited -= {own.out, own.err}
        self._own = own

    def open_pipes(self) -> Pipes:
        """A child's pipes, before it is forked: the relay reads them from now on."""
        sys.stdout.flush()  # nothing buffered here is written twice by the child
        sys.stderr.flush()
        return self._pipes(None)

    def close_pipes(self, pipes: Pipes) -> None:
        """This process's copies of an exited child's write ends: the relay then drains the
        pipes to their end."""
        for fd in pipes:
            if fd in self._inherited:
                self._inherited.discard(fd)
                os.close(fd)

    def stop(self, timeout: float = 5.0) -> None:
        """Give stdout and stderr back to the real streams, let the relay write out what the
        pipes still hold (for at most *timeout* seconds), and end it."""
        if not self._thread.is_alive():
            return
        if self._own is not None:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(self._real["stdout"], 1)
            os.dup2(self._real["stderr"], 2)
            self._own = None
        self._inbox.put(float(timeout))
        os.write(self._wake_w, b"x")
        self._thread.join(timeout + 1.0)
        if not self._thread.is_alive():
            for fd in (*self._real.values(), self._wake_r, self._wake_w):
                os.close(fd)

    def _pipes(self, pid: int | None) -> Pipes:
        out_r, out_w = os.pipe()
        err_r, err_w = os.pipe()
        self._inherited |= {out_r, out_w, err_r, err_w}
        self._inbox.put((out_r, "stdout", pid))
        self._inbox.put((err_r, "stderr", pid))
        os.write(self._wake_w, b"x")
        return Pipes(out_w, err_w)

    # --- the child's side ------------------------------------------------------------------

    def adopt(self, pipes: Pipes) -> None:
        """In a forked child: write stdout and stderr into *pipes*, and close every other
        descriptor of the relay (so each pipe ends when its one writer does)."""
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(pipes.out, 1)
        os.dup2(pipes.err, 2)
        for fd in self._inherited:
            try:
                os.close(fd)
            except OSError:
                pass
        self._inherited = set()
        hello = _HELLO + str(os.getpid()).encode() + b"\n"
        os.write(1, hello)
        os.write(2, hello)

    # --- the relay thread ------------------------------------------------------------------

    def _run(self) -> None:
        selector = selectors.DefaultSelector()
        selector.register(self._wake_r, selectors.EVENT_READ)
        streams: dict[int, _Stream] = {}
        deadline: float | None = None
        while deadline is None or (streams and time.monotonic() < deadline):
            wait = None if deadline is None else max(0.0, deadline - time.monotonic())
            for key, _ in selector.select(wait):
                fd = key.fd
                if fd == self._wake_r:
                    os.read(fd, 4096)
                    deadline = self._take_inbox(selector, streams, deadline)
                    continue
                state = streams[fd]
                data = os.read(fd, _READ)
                if data:
                    self._received(state, data)
                    continue
                selector.unregister(fd)
                os.close(fd)
                del streams[fd]
                if state.buffer:  # its writer died mid-line
                    self._write(state.stream, self._text_record(state, bytes(state.buffer), truncated=True))
        for state in streams.values():  # out of time: what is buffered is still written
            if state.buffer:
                self._write(state.stream, self._text_record(state, bytes(state.buffer), truncated=True))
        selector.close()

    def _take_inbox(
        self, selector: selectors.BaseSelector, streams: dict[int, _Stream], deadline: float | None
    ) -> float | None:
        while True:
            try:
                message = self._inbox.get_nowait()
            except queue.Empty:
                return deadline
            if isinstance(message, float):  # stop(): drain for at most that long
                deadline = time.monotonic() + message
                continue
            fd, stream, pid = message
            streams[fd] = _Stream(stream, pid)
            selector.register(fd, selectors.EVENT_READ)

    def _received(self, state: _Stream, data: bytes) -> None:
        buffer = state.buffer
        buffer += data
        end = buffer.rfind(b"\n")
        if end < 0:
            if len(buffer) > MAX_LINE_BYTES:
                piece = bytes(buffer)
                buffer.clear()
                self._write(state.stream, self._text_record(state, piece, truncated=True))
            return
        complete = bytes(buffer[: end + 1])
        del buffer[: end + 1]
        if state.pid is None and complete.startswith(_HELLO):
            first, _, complete = complete.partition(b"\n")
            pid = first[len(_HELLO) :]
            state.pid = int(pid) if pid.isdigit() else None
            if not complete:
                return
        self._write(state.stream, self._lines(state, complete) if self.wrap_text else complete)

    def _lines(self, state: _Stream, complete: bytes) -> bytes:
        """*complete* (whole lines) with every line that is not a JSON object made a record."""
        lines = complete.split(b"\n")
        lines.pop()  # after the last newline
        if all(_is_record(line) for line in lines):
            return complete
        out = []
        for line in lines:
            if _is_record(line):
                out.append(line + b"\n")
            elif line.strip():
                out.append(self._text_record(state, line, truncated=False))
        return b"".join(out)

    def _text_record(self, state: _Stream, line: bytes, *, truncated: bool) -> bytes:
        if not self.wrap_text:
            return line + b"\n" if truncated else line
        runtime = current()
        text = runtime.redactor.scrub_text(line.rstrip(b"\r").decode("utf-8", "replace"))
        fields: dict[str, object] = {"stream": state.stream}
        if state.pid is not None:
            fields["process.pid"] = state.pid
        level = "error" if state.stream == "stderr" or truncated else "info"
        if truncated:
            fields["tags"] = ["truncated"]
        record = runtime.builder.build(level, _LOGGER, text, timestamp_now(), fields=fields)
        return render_json(record)

    def _write(self, stream: str, data: bytes) -> None:
        fd = self._real[stream]
        view = memoryview(data)
        try:
            while view:
                view = view[os.write(fd, view) :]
        except OSError:
            self.failures += 1


def _is_record(line: bytes) -> bool:
    if line[:1] != b"{" or line[-1:] != b"}":
        return False
    try:
        return isinstance(orjson.loads(line), dict)
    except orjson.JSONDecodeError:
        return False
