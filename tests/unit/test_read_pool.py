"""The read pool (storage/db.py): reads never wait for the writer, cannot write, see one
snapshot per session, and reuse a fixed set of connections, on both engines."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import event, func, select, update
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession

from storage.db import DEFAULT_READ_POOL, HEALTH_POOL, Database
from storage.models import Case, InboxKey
from tests.unit.test_storage import a_case

HANG = 30.0  # a guard against a read stuck behind the writer; never a timing assertion
NOW = datetime(2026, 11, 21, 2, 0, tzinfo=UTC).replace(tzinfo=None)


@asynccontextmanager
async def writer_held(db: Database) -> AsyncIterator[AsyncSession]:
    """Every writer slot taken by open write transactions, one of which has updated the
    case: the SQLite writer lock, or every connection of PostgreSQL's writer pool."""
    slots = 1 if db.is_sqlite else db.engine.pool.size() + db.engine.pool._max_overflow  # type: ignore[attr-defined]
    async with AsyncExitStack() as stack:
        first = await stack.enter_async_context(db.transaction())
        await first.execute(update(Case).values(status="approved", version=Case.version + 1))
        for n in range(slots - 1):
            other = await stack.enter_async_context(db.transaction())
            other.add(InboxKey(key=f"held-{n}", source="test", received_at=NOW))
            await other.flush()
        yield first


async def test_reads_and_ping_do_not_wait_for_the_writer(db: Database) -> None:
    async with db.transaction() as session:
        session.add(a_case())
    async with writer_held(db):
        async with asyncio.timeout(HANG):
            assert await db.ping()
            async with db.read() as session:
                stored = await session.get(Case, "RC-261121-0001")
        assert stored is not None and stored.status == "requested"  # the last commit


async def test_a_read_session_cannot_write(db: Database) -> None:
    with pytest.raises(DBAPIError):
        async with db.read() as session:
            session.add(InboxKey(key="sneaky", source="test", received_at=NOW))
            await session.flush()
    async with db.read() as session:
        assert await session.get(InboxKey, "sneaky") is None


async def test_a_read_session_sees_one_snapshot(db: Database) -> None:
    async def count(session: AsyncSession) -> int:
        return int(await session.scalar(select(func.count()).select_from(Case)) or 0)

    async with db.read() as session:
        assert await count(session) == 0
        async with db.transaction() as writer:
            writer.add(a_case())
        assert await count(session) == 0  # the page it is assembling stays consistent
    async with db.read() as session:
        assert await count(session) == 1


async def test_the_read_pool_reuses_its_connections(db: Database) -> None:
    """A burst of health checks and reads opens at most the pool's connections (and, on
    SQLite, aiosqlite's thread for each reader; the health check's run on the loop), then
    reuses them: no overflow churn."""
    opened: list[Any] = []
    pooled: list[Any] = []  # the read pool's: on SQLite, each has aiosqlite's thread
    event.listen(db.read_engine.sync_engine, "connect", lambda conn, _rec: pooled.append(conn))
    for engine in {db.read_engine, db.health_engine}:  # pings have their own two
        event.listen(engine.sync_engine, "connect", lambda conn, _rec: opened.append(conn))
    started: list[threading.Thread] = []
    real_start = threading.Thread.start

    def counting_start(self: threading.Thread) -> None:
        started.append(self)
        real_start(self)

    async def read() -> None:
        async with db.read() as session:
            await session.scalar(select(func.count()).select_from(Case))

    threading.Thread.start = counting_start  # type: ignore[method-assign]
    try:
        for _ in range(5):
            results = await asyncio.gather(
                *(db.ping() for _ in range(20)), *(read() for _ in range(20))
            )
            assert all(r is None or r is True for r in results)
    finally:
        threading.Thread.start = real_start  # type: ignore[method-assign]
    assert 1 <= len(opened) <= DEFAULT_READ_POOL + HEALTH_POOL
    if db.is_sqlite:  # a thread per pooled reader; the pings' run on the loop, threadless
        assert len(started) == len(pooled)
