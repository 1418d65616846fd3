"""Close a session or a connection in the task that used it.

SQLAlchemy's async context managers (`async with AsyncSession(...)`, `async with
engine.connect()`) close in a task of their own and wait for it through
`asyncio.shield` (ext/asyncio/base.py `_run_to_completion`), so that a cancellation
cannot abandon a close half-way. The price is two more turns of the loop at every
exit, with nothing to wait for: under load a turn is several milliseconds, and the
SQLite writer's lock (storage/db.py `transaction`) is released only after the
session is closed, so every write transaction held it through those turns, idle.
Measured under 64 connections of intake (docs/performance.md, "Seventh pass"), the
health check spent three turns in its exit alone.

Here the close runs in the caller's task. It is used where the transaction is over by
then (committed or rolled back by `session.begin()`, or never begun, as the health
check's raw `SELECT 1`), so what remains is handing the connection back to its pool:
on SQLite's inline connections that never suspends, and on PostgreSQL the reset's
rollback is a no-op without a transaction. Were a cancellation ever to land in a close
that does suspend, the pool returns the record as failed, not half-reset (its
`_finalize_fairy` handles a BaseException since SQLAlchemy 2.1's #13699).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession


@asynccontextmanager
async def session_here(session: AsyncSession) -> AsyncIterator[AsyncSession]:
    """`session`, closed in this task on the way out."""
    try:
        yield session
    finally:
        await session.close()


@asynccontextmanager
async def connection_here(engine: AsyncEngine) -> AsyncIterator[AsyncConnection]:
    """A connection of `engine`'s pool, given back in this task on the way out."""
    conn = await engine.connect()
    try:
        yield conn
    finally:
        await conn.close()
