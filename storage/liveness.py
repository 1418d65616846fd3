"""Pooled PostgreSQL connections are checked when they may have gone stale, not always.

SQLAlchemy's `pool_pre_ping` checks every connection at every checkout, and with
asyncpg its check is a transaction of its own (BEGIN, an empty query, ROLLBACK):
three round trips before the first statement. Under load each round trip waits
for a turn of the busy event loop, so `/healthz`'s one `SELECT 1` took four turns,
and every read and write transaction paid three more.

Here a connection is checked, in one round trip, only when it sat unused longer
than `IDLE`, or when it was pooled at a failure on any of the database's engines
(`suspect`: the health check met a dead connection, or a statement a disconnect).
One used a moment ago is as live as one just checked; if it did die meanwhile, its
statement fails as a disconnect, on which SQLAlchemy invalidates its pool and the
other pools check theirs. A failed check invalidates the pool too
(`InvalidatePoolError`) and the checkout goes on with a new connection.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

from sqlalchemy import event
from sqlalchemy.exc import InvalidatePoolError
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.util import await_

IDLE = 1.0  # seconds unused after which a pooled connection is checked before use
_USED = "returnhub_used_at"


class Liveness:
    """The checkout check of the pools of one database's engines (see the module docstring)."""

    def __init__(self, engines: Iterable[AsyncEngine], timeout: float, idle: float = IDLE) -> None:
        self.timeout, self.idle = timeout, idle
        self.suspect_since = 0.0
        for engine in engines:
            pool = engine.sync_engine.pool
            event.listen(pool, "connect", self._used)
            event.listen(pool, "checkin", self._used)
            event.listen(pool, "checkout", self._checkout)
            event.listen(engine.sync_engine, "handle_error", self._on_error)

    def suspect(self) -> None:
        """A connection just failed: check every pooled one before its next use."""
        self.suspect_since = time.monotonic()

    def _on_error(self, context: Any) -> None:
        if context.is_disconnect:
            self.suspect()

    def _used(self, _dbapi_conn: Any, record: Any) -> None:
        record.info[_USED] = time.monotonic()

    def _checkout(self, _dbapi_conn: Any, record: Any, _proxy: Any) -> None:
        used = record.info.get(_USED, 0.0)
        if time.monotonic() - used <= self.idle and used > self.suspect_since:
            return
        try:
            await_(record.driver_connection.fetchval("SELECT 1", timeout=self.timeout))
        except Exception as exc:  # noqa: BLE001 - any failure: the connection is gone
            raise InvalidatePoolError(f"pooled connection failed its check: {exc!r}") from exc
