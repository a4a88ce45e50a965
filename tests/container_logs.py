"""Container log lines as the runtimes write them: Docker's json-file and CRI (a test helper)."""

from __future__ import annotations

import json

DOCKER_SPLIT = 16 * 1024
CID = "3f4e5d6c" * 8  # a 64-hex container id
TS = "2026-12-02T10:00:00.{:09d}Z"


def inner(seq: int, pad: int = 0, **fields) -> str:
    """An Amebo-like record line (what the container writes to stdout), numbered."""
    doc = {"@timestamp": f"2026-12-02T10:00:00.{seq % 1000000:06d}Z", "log.level": "info", "message": "m", "seq": seq}
    doc.update(fields)
    if pad:
        doc["pad"] = "x" * pad
    return json.dumps(doc, separators=(",", ":"))


def docker_lines(text: str, stream: str = "stdout", n: int = 0, split: int = DOCKER_SPLIT) -> list[bytes]:
    """*text* (one line, no newline) as Docker's json-file driver writes it."""
    data = text + "\n"
    parts = [data[i : i + split] for i in range(0, len(data), split)] or ["\n"]
    return [
        json.dumps({"log": p, "stream": stream, "time": TS.format(n + i)}, separators=(",", ":")).encode() + b"\n"
        for i, p in enumerate(parts)
    ]


def cri_lines(text: str, stream: str = "stdout", n: int = 0, split: int = DOCKER_SPLIT) -> list[bytes]:
    """*text* as containerd writes it: ``P`` parts, then ``F``."""
    raw = text.encode()
    parts = [raw[i : i + split] for i in range(0, len(raw), split)] or [b""]
    return [
        TS.format(n + i).encode() + b" " + stream.encode() + (b" F " if i == len(parts) - 1 else b" P ") + p + b"\n"
        for i, p in enumerate(parts)
    ]


WRITERS = {"docker": docker_lines, "cri": cri_lines}
