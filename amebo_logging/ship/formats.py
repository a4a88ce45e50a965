"""Container log files: Docker's json-file and the CRI format, framed into the lines inside.

A container's logs are its stdout and stderr, which the runtime wraps line by line:

* **Docker json-file** (``/var/lib/docker/containers/<id>/<id>-json.log``): one JSON object
  per line, ``{"log": "<line>\\n", "stream": "stdout", "time": "<RFC 3339, ns>"}``.  Docker
  writes a line longer than 16 KiB as several entries; all but the last lack the final
  ``\\n`` in ``log``.
* **CRI** (containerd, CRI-O: Kubernetes' ``/var/log/pods`` and ``/var/log/containers``):
  ``<time> <stream> <P|F> <content>``, where ``P`` parts are joined up to the next ``F``.

A :class:`Framer` (one per file generation, owned by its :class:`~.reader.FileReader`) turns complete
outer lines into *records*: the container's own lines, joined, with the runtime's time and
stream.  Parts are joined per stream (the runtime may interleave a long stdout line with
stderr).  A record keeps the offsets of the outer file: it starts where its first part
starts and ends after its last, so ids, offsets and exactly-once are the outer file's.  Until
a record's last part arrives, nothing at or after its first part is acknowledged:
:attr:`Framer.covered` is the offset everything before which is in records already handed
out.  A record longer than *max_bytes* is handed out cut at that length when it gets there
(tagged ``truncated``); the rest of it is skipped.

Docker's entries are unwrapped by :func:`_unwrap.unwrap` (C, when it was built) while they are
whole lines in exactly the form Docker writes, on one stream: :meth:`Framer.frame` hands those
out as a :class:`Run` (columns, not a tuple per line), and everything else the careful way below.
Both give the same records; the C path is what keeps the wrapper cheap (one pass, in place of a
JSON parse and an object per line).

Nothing here reads files or knows offsets beyond what it is given: the reader feeds it.
"""

from __future__ import annotations

import operator
import os
import re
from dataclasses import dataclass, field
from typing import Any, Final

import orjson

#: Docker's entries unwrapped in C (``_unwrap.c``, built where a C compiler was at hand at
#: install time), or None: the same records, the careful way only, slower.
try:
    from ._unwrap import unwrap as c_unwrap
except ImportError:  # (a machine that could not build it)
    c_unwrap = None  # type: ignore[assignment]

__all__ = [
    "CONTAINER_KEYS",
    "FORMATS",
    "CriFramer",
    "DockerFramer",
    "Framer",
    "Piece",
    "Record",
    "Run",
    "c_unwrap",
    "container_fields",
    "detect",
    "framer_for",
]

FORMATS: Final = ("auto", "json", "docker", "cri")

#: One record: (start, end, line, time, stream, cut) where *line* is the container's line
#: without its newline, *time* and *stream* the runtime's ("" when unknown), and *cut* the
#: record's full length when it was cut at the limit (-1: longer than the limit; 0: whole).
#: Tuples: one is built per line of the container.
Record = tuple[int, int, bytes, str, str, int]

#: The keys a container's document gets that a plain file's does not: the runtime's stream
#: and what :func:`container_fields` finds.  A line holding one of its own is built the careful way.
CONTAINER_KEYS: Final = (
    "stream",
    "container.id",
    "container.name",
    "container.image.name",
    "kubernetes.namespace",
    "kubernetes.pod.name",
    "kubernetes.pod.uid",
    "kubernetes.container.name",
)


def _watch(keys: tuple[str, ...]) -> bytes:
    """What the C unwrapper is told to watch for (its *watch*): each key after its opening
    quote, as a Docker entry holds it (the line's text, escaped again), up to its first dot
    (``stream\\"``, ``container.``, ``kubernetes.``); as 16 bytes, NULs after the word."""
    words: dict[bytes, None] = {}
    for key in keys:
        escaped = orjson.dumps(orjson.dumps(key).decode()[1:])[1:-1]
        head, dot, _ = escaped.partition(b".")
        words[head + dot] = None
    if any(not 8 <= len(word) <= 16 for word in words) or len(words) > 4:
        raise ValueError(f"the C unwrapper watches for up to 4 words of 8 to 16 bytes, not {list(words)}")
    return b"".join(word.ljust(16, b"\0") for word in words)


_CONTAINER_WATCH: Final = _watch(CONTAINER_KEYS)

#: Where the C unwrapper gave up, how much the careful way reads before it is tried again
#: (a file it cannot take costs one failed call per this many bytes).
CAREFUL_STRETCH: Final = 8192


@dataclass(frozen=True, slots=True)
class Run:
    """Consecutive whole entries on one stream, unwrapped: the records
    ``(starts[i], starts[i + 1], lines[i], time(i), stream, 0)``, as columns.  *objects*: every
    line starts with ``{"`` (JSON lines, the common case).  *keyed*: the lines (indices) that
    may hold one of :data:`CONTAINER_KEYS` (every other line surely holds none).  The runtime's
    times are read from the entries (*outer*, which starts at offset *base*) only when asked
    for: a line with its own ``@timestamp`` never needs one."""

    lines: list[bytes]
    starts: list[int]  # one more than lines: where the last one ends
    stream: str
    objects: bool
    outer: bytes
    base: int
    keyed: list[int]

    @property
    def end(self) -> int:
        return self.starts[-1]

    def time(self, i: int) -> str:
        """The runtime's time of line *i* (the entry is in Docker's own layout: it ends
        ``"time":"<time>"}``, a time in ASCII without quotes or escapes)."""
        entry = self.outer[self.starts[i] - self.base : self.starts[i + 1] - self.base - 1]
        return entry[entry.rindex(b'"time":"') + 8 : -2].decode()

    def records(self) -> list[Record]:
        s, stream = self.starts, self.stream
        return [(s[i], s[i + 1], line, self.time(i), stream, 0) for i, line in enumerate(self.lines)]


#: What :meth:`Framer.frame` hands out: records (in order of their first byte), or a run.
Piece = list[Record] | Run

_STREAMS: Final = ("stdout", "stderr")

_CRI = re.compile(rb"(\d{4}-\d\d-\d\dT\S+) (stdout|stderr) ([PF])(?: |$)")
_DOCKER_HEAD = re.compile(rb'\{\s*"log"\s*:')
#: How much of a file :func:`detect` is given: a Docker entry holds up to 16 KiB of text,
#: which escaping may make several times longer.
DETECT_BYTES: Final = 128 * 1024


def detect(head: bytes) -> str:
    """The format of a file that starts with *head*: docker, cri or json."""
    first, newline, _ = head.partition(b"\n")
    if _DOCKER_HEAD.match(first):
        if not newline:  # a first entry longer than what was read: Docker's writer starts so
            return "docker"
        try:
            entry = orjson.loads(first)
        except orjson.JSONDecodeError:
            return "json"
        if isinstance(entry, dict) and isinstance(entry.get("log"), str) and "time" in entry:
            return "docker"
        return "json"
    if _CRI.match(first):
        return "cri"
    return "json"


_START = operator.itemgetter(0)


@dataclass(slots=True)
class _Partial:
    """A record being joined on one stream."""

    start: int
    time: str
    parts: list[bytes] = field(default_factory=list)
    size: int = 0
    cut: bool = False  # over the limit: handed out already; the rest of it is skipped


class Framer:
    """Joins one file's outer lines into records (see the module docstring)."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._partial: dict[str, _Partial] = {}  # by stream

    def covered(self, position: int) -> int:
        """Everything before the returned offset is in records handed out, when the outer
        lines up to *position* were fed."""
        starts = [p.start for p in self._partial.values() if not p.cut]
        return min(starts) if starts else position

    def feed(self, data: bytes, offset: int) -> list[Record]:
        """The records completed by *data* (complete outer lines starting at *offset*), in the
        order of their first byte."""
        out: list[Record] = []
        pos = offset
        for raw in data.split(b"\n")[:-1]:
            end = pos + len(raw) + 1
            self._line(raw[:-1] if raw[-1:] == b"\r" else raw, pos, end, out)
            pos = end
        if len(out) > 1:
            out.sort(key=_START)
        return out

    def frame(self, data: bytes, offset: int) -> list[Piece]:
        """What :meth:`feed` gives, in pieces: the records (complete outer lines *data*
        starting at *offset*), each piece starting where the one before ends."""
        return [self.feed(data, offset)]

    def feed_long(self, start: int, head: bytes, length: int, out: list[Record]) -> None:
        """An outer line over the limit (its first bytes): a record of its own, cut."""
        out.append((start, start + length + 1, head, "", "", length))

    def _line(self, raw: bytes, start: int, end: int, out: list[Record]) -> None:
        raise NotImplementedError

    def _part(self, stream: str, time: str, text: bytes, final: bool, start: int, end: int, out: list[Record]) -> None:
        """One part of a record on *stream*; *final* when it ends the record."""
        partial = self._partial.get(stream)
        if partial is None:
            if final:  # the usual case: a whole line in one entry
                if len(text) > self.max_bytes:
                    out.append((start, end, text[: self.max_bytes], time, stream, len(text)))
                else:
                    out.append((start, end, text, time, stream, 0))
                return
            partial = self._partial[stream] = _Partial(start, time)
        if not partial.cut:
            partial.parts.append(text)
            partial.size += len(text)
            if partial.size > self.max_bytes:
                line = b"".join(partial.parts)
                out.append((partial.start, end, line[: self.max_bytes], partial.time, stream, -1))
                partial.cut, partial.parts = True, []
        if final:
            del self._partial[stream]
            if not partial.cut:
                out.append((partial.start, end, b"".join(partial.parts), partial.time, stream, 0))

    def _unframed(self, raw: bytes, start: int, end: int, out: list[Record]) -> None:
        """A line that is not in the runtime's format: a record of its own, as it is."""
        out.append((start, end, raw[: self.max_bytes], "", "", len(raw) if len(raw) > self.max_bytes else 0))


class DockerFramer(Framer):
    """Docker's json-file logs."""

    def __init__(self, max_bytes: int, *, fast: bool = True) -> None:
        super().__init__(max_bytes)
        self._unwrap = c_unwrap if fast else None  # None: the careful way only

    def frame(self, data: bytes, offset: int) -> list[Piece]:
        unwrap = self._unwrap
        if unwrap is None:
            return [self.feed(data, offset)]
        pieces: list[Piece] = []
        records: list[Record] = []
        pos, size = 0, len(data)
        while pos < size:
            if not self._partial:
                lines, starts, stream, objects, stop, keyed = unwrap(
                    data, pos, offset, self.max_bytes, _CONTAINER_WATCH
                )
                if lines:
                    if records:
                        records.sort(key=_START)
                        pieces.append(records)
                        records = []
                    pieces.append(Run(lines, starts, _STREAMS[stream], bool(objects), data, offset, keyed))
                    pos = stop
                    continue
            # (what it gave up at, and a stretch after: records joined from parts across
            # stretches are sorted together)
            stop = data.find(b"\n", min(size - 1, pos + CAREFUL_STRETCH)) + 1
            records += self.feed(data[pos:stop], offset + pos)
            pos = stop
        if records or not pieces:
            records.sort(key=_START)
            pieces.append(records)
        return pieces

    def feed(self, data: bytes, offset: int) -> list[Record]:
        # This loop runs once per line of the container: the usual entry (a whole line, on a
        # stream with nothing being joined) is framed inline; anything else goes to _line.
        out: list[Record] = []
        append = out.append
        loads = orjson.loads
        partial = self._partial
        short = self.max_bytes // 4  # (a str of this many characters encodes within the limit)
        careful = False
        pos = offset
        for raw in data.split(b"\n")[:-1]:
            end = pos + len(raw) + 1
            if not partial:
                try:
                    entry = loads(raw)
                    log = entry["log"]
                    if log[-1] == "\n" and log[-2] != "\r" and len(log) <= short:
                        append((pos, end, log[:-1].encode(), entry["time"], entry["stream"], 0))
                        pos = end
                        continue
                except Exception:  # not a plain entry: the careful way, below
                    pass
            self._line(raw[:-1] if raw[-1:] == b"\r" else raw, pos, end, out)
            careful = True
            pos = end
        if len(out) > 1 and careful:  # a line joined from parts may start before the ones after it
            out.sort(key=_START)
        return out

    def _line(self, raw: bytes, start: int, end: int, out: list[Record]) -> None:
        try:
            entry: Any = orjson.loads(raw)
            log = entry["log"]
            if not isinstance(log, str):
                raise TypeError
        except (orjson.JSONDecodeError, KeyError, TypeError):
            self._unframed(raw, start, end, out)
            return
        stream = entry.get("stream")
        time = entry.get("time")
        text = log.encode("utf-8", "surrogatepass")
        final = text.endswith(b"\n")
        if final:
            text = text[:-2] if text.endswith(b"\r\n") else text[:-1]
        self._part(
            stream if isinstance(stream, str) else "",
            time if isinstance(time, str) else "",
            text,
            final,
            start,
            end,
            out,
        )


class CriFramer(Framer):
    """The CRI format (containerd, CRI-O)."""

    def _line(self, raw: bytes, start: int, end: int, out: list[Record]) -> None:
        m = _CRI.match(raw)
        if m is None:
            self._unframed(raw, start, end, out)
            return
        text = raw[m.end() :]
        self._part(m.group(2).decode(), m.group(1).decode(), text, m.group(3) == b"F", start, end, out)


def framer_for(name: str, max_bytes: int) -> Framer | None:
    """The framer of format *name* (docker or cri); None for plain JSON lines."""
    if name == "docker":
        return DockerFramer(max_bytes)
    if name == "cri":
        return CriFramer(max_bytes)
    return None


# --- where a container's metadata comes from: the file's path ---------------------------------

_HEX64 = re.compile(r"[0-9a-f]{64}")
_CONTAINERS_LOG = re.compile(r"(?P<pod>[^_/]+)_(?P<ns>[^_/]+)_(?P<container>[^/]+)-(?P<id>[0-9a-f]{64})\.log$")
_PODS_LOG = re.compile(r"(?P<ns>[^_/]+)_(?P<pod>[^_/]+)_(?P<uid>[^_/]+)/(?P<container>[^/]+)/\d+\.log(?:\.[^/]*)?$")


def container_fields(path: str, read_config: bool = True) -> dict[str, str]:
    """What *path* says of the container whose log it is (ECS ``container.*``, and Filebeat's
    ``kubernetes.*``); nothing for a path that is no container log.

    * ``/var/log/containers/<pod>_<namespace>_<container>-<id>.log`` (Kubernetes' links);
    * ``/var/log/pods/<namespace>_<pod>_<uid>/<container>/<n>.log`` (and its rotations);
    * ``.../containers/<id>/<id>-json.log`` (Docker): the id, and from the container's
      ``config.v2.json`` beside it, when readable, its name and image.
    """
    found: dict[str, str] = {}
    m = _CONTAINERS_LOG.search(path)
    if m is not None:
        found = {
            "container.id": m["id"],
            "kubernetes.namespace": m["ns"],
            "kubernetes.pod.name": m["pod"],
            "kubernetes.container.name": m["container"],
        }
        return found
    m = _PODS_LOG.search(path)
    if m is not None:
        return {
            "kubernetes.namespace": m["ns"],
            "kubernetes.pod.name": m["pod"],
            "kubernetes.pod.uid": m["uid"],
            "kubernetes.container.name": m["container"],
        }
    directory = os.path.dirname(path)
    cid = os.path.basename(directory)
    if _HEX64.fullmatch(cid) and os.path.basename(path).startswith(cid + "-json.log"):
        found["container.id"] = cid
        if read_config:
            found.update(_docker_config(os.path.join(directory, "config.v2.json")))
    return found


def _docker_config(path: str) -> dict[str, str]:
    try:
        with open(path, "rb") as f:
            config = orjson.loads(f.read(1 << 20))
    except (OSError, orjson.JSONDecodeError):
        return {}
    out: dict[str, str] = {}
    name = config.get("Name") if isinstance(config, dict) else None
    if isinstance(name, str) and name.strip("/"):
        out["container.name"] = name.lstrip("/")
    image = (config.get("Config") or {}).get("Image") if isinstance(config, dict) else None
    if isinstance(image, str) and image:
        out["container.image.name"] = image
    return out
