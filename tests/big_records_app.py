"""Amebo, instrumented, with one route more for the tests: records of any size, on demand.

``GET /_log?n=7&bytes=20000`` logs ``big_record`` (field ``n``) padded to about that many
bytes; ``&kind=traceback`` logs ``big_traceback`` with an exception whose message is that
long.  Every other request goes to Amebo (``amebo_logging.amebo:app``) unchanged.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs

from amebo_logging import get_logger
from amebo_logging.amebo import app as amebo_app

log = get_logger("tests.big")


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http" or scope["path"] != "/_log":
        await amebo_app(scope, receive, send)
        return
    query = parse_qs(scope["query_string"].decode())
    n, size = int(query["n"][0]), int(query["bytes"][0])
    if query.get("kind") == ["traceback"]:
        try:
            raise ValueError("v" * size)
        except ValueError:
            log.exception("big_traceback", n=n)
    else:
        log.info("big_record", n=n, pad="p" * size)
    await send({"type": "http.response.start", "status": 204, "headers": []})
    await send({"type": "http.response.body", "body": b""})
