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

Here the close runs in the caller's task. It is used where nothing is left for it to
wait on. In `Database.transaction` the connection has already gone back to its pool in
`session.begin()`'s exit (a commit or rollback ends by closing the session's
connection), so the close only clears the session's bookkeeping; in the health check
the raw `SELECT 1` never opens a transaction and its pool resets nothing on return
(`pool_reset_on_return=None`). Neither suspends, so no cancellation can cut either in
half: the suspensions that remain (COMMIT, ROLLBACK, an overflow connection closed at
checkin) are in `session.begin()`'s exit, which SQLAlchemy never shielded either.
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
