"""``/health/detailed`` and ``/health/database`` for Amebo 0.9, answered before its router.

Amebo's monitoring guide names three health checks; Amebo 0.9 serves ``/health`` (liveness)
and ``/readyz``, not these two.  Each answers JSON, 200 when healthy and 503 with the reason
when not, within :data:`CHECK_TIMEOUT` seconds for each database query (so at most about two
seconds in all):

* ``/health/database``: a ``SELECT 1`` round trip (``round_trip_ms``); for SQLite, that
  ``./amebo.db`` is still the database being written (a file moved or deleted under a running
  Amebo keeps receiving writes nobody will read);
* ``/health/detailed``: the database check, the delivery daemon's last cycle in this worker
  (``delivery_daemon.last_cycle_seconds_ago``; stale past :data:`DAEMON_STALE_SECONDS`), the
  deliveries pending and retrying, and the free space where the database lives (under
  :data:`MIN_FREE_FRACTION` is unhealthy).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import time
from typing import Any, Final

import orjson

__all__ = ["CHECK_TIMEOUT", "DAEMON_STALE_SECONDS", "MIN_FREE_FRACTION", "HealthRoutes", "daemon_cycled"]

CHECK_TIMEOUT: Final = 1.0
DAEMON_STALE_SECONDS: Final = 120.0
MIN_FREE_FRACTION: Final = 0.02
_SQLITE_FILE: Final = "amebo.db"

_last_cycle: list[float] = []  # monotonic time of the delivery daemon's last cycle here


def daemon_cycled() -> None:
    """The delivery daemon began a cycle (called from its work picker)."""
    if _last_cycle:
        _last_cycle[0] = time.monotonic()
    else:
        _last_cycle.append(time.monotonic())


class HealthRoutes:
    """ASGI: ``GET /health/detailed`` and ``GET /health/database`` for the Amebo *router*;
    every other request goes to it."""

    PATHS: Final = ("/health/detailed", "/health/database")

    def __init__(self, router: Any) -> None:
        self.router = router
        self._started_inode: tuple[int, int] | None = None

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        path = scope.get("path") if scope["type"] == "http" else None
        if path not in self.PATHS or scope.get("method") not in ("GET", "HEAD"):
            await self.router(scope, receive, send)
            return
        body = await (self.detailed() if path == "/health/detailed" else self.database())
        data = orjson.dumps(body)
        status = 200 if body["status"] == "ok" else 503
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode())]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": b"" if scope["method"] == "HEAD" else data})

    def _executor(self) -> Any:
        from amebo.decorators.providers import Executor

        return Executor(self.router)

    async def database(self) -> dict[str, Any]:
        out: dict[str, Any] = {"status": "ok"}
        try:
            executor = self._executor()
            engine = executor.engine or "sqlite"
            out["engine"] = engine
            if executor.db is None:
                raise RuntimeError("no database connection: Amebo could not connect at start")
            started = time.perf_counter()
            row = await asyncio.wait_for(executor.fetch(1).execute("SELECT 1"), CHECK_TIMEOUT)
            out["round_trip_ms"] = round((time.perf_counter() - started) * 1000, 3)
            if not row:
                raise RuntimeError("the database answered SELECT 1 with nothing")
            if engine == "sqlite":
                self._check_sqlite_file()
        except TimeoutError:
            out.update(status="unavailable", reason=f"the database did not answer within {CHECK_TIMEOUT:g} s")
        except Exception as exc:
            out.update(status="unavailable", reason=f"{type(exc).__name__}: {exc}")
        return out

    def _check_sqlite_file(self) -> None:
        try:
            st = os.stat(_SQLITE_FILE)
        except FileNotFoundError:
            raise RuntimeError(
                f"{os.path.abspath(_SQLITE_FILE)} is gone: Amebo still writes the file it opened, which "
                "nothing will read after a restart; put it back, or restart Amebo"
            ) from None
        if self._started_inode is None:
            self._started_inode = (st.st_dev, st.st_ino)
        elif self._started_inode != (st.st_dev, st.st_ino):
            raise RuntimeError(f"{os.path.abspath(_SQLITE_FILE)} was replaced since Amebo opened it; restart Amebo")
        with open(_SQLITE_FILE, "rb") as f:
            if f.read(16) != b"SQLite format 3\x00":
                raise RuntimeError(f"{os.path.abspath(_SQLITE_FILE)} is not an SQLite database any more")

    async def detailed(self) -> dict[str, Any]:
        database = await self.database()
        out: dict[str, Any] = {"status": "ok", "database": database}
        reasons = [f"database: {database['reason']}"] if database["status"] != "ok" else []
        age = round(time.monotonic() - _last_cycle[0], 3) if _last_cycle else None
        out["delivery_daemon"] = {"last_cycle_seconds_ago": age}
        if age is not None and age > DAEMON_STALE_SECONDS:
            reasons.append(f"the delivery daemon has not cycled for {age:.0f} s")
        if database["status"] == "ok":
            out["deliveries"] = await self._deliveries()
        where = os.path.dirname(os.path.abspath(_SQLITE_FILE))
        try:
            usage = shutil.disk_usage(where)
            free = usage.free / usage.total if usage.total else 1.0
            out["disk"] = {"path": where, "free_bytes": usage.free, "free_fraction": round(free, 4)}
            if free < MIN_FREE_FRACTION:
                reasons.append(f"{where} has {free:.1%} free, under {MIN_FREE_FRACTION:.0%}")
        except OSError as exc:
            reasons.append(f"disk: {exc}")
        if reasons:
            out.update(status="unavailable", reason="; ".join(reasons))
        return out

    async def _deliveries(self) -> dict[str, Any]:
        from amebo.utils.helpers import DELIVERY_PREDICATES  # Amebo's own meaning of each state

        executor = self._executor()
        x = executor.schema
        counts = ", ".join(
            f"SUM(CASE WHEN {DELIVERY_PREDICATES[state]} THEN 1 ELSE 0 END)" for state in ("retrying", "pending")
        )
        sql = f"SELECT {counts} FROM {x}gists g JOIN {x}subscriptions s ON g.subscription = s.subscription"
        try:
            row = await asyncio.wait_for(executor.fetch(1).execute(sql), CHECK_TIMEOUT)
        except Exception as exc:  # a timeout included
            return {"error": f"{type(exc).__name__}: {exc}"}
        retrying, pending = row or (0, 0)
        return {"pending": int(pending or 0), "retrying": int(retrying or 0)}
