"""Sessions and connections closed in the task that used them (storage/closing.py):
leaving a write transaction or the health check takes no extra turn of the loop (so
SQLite's writer lock is free at once), and a cancelled transaction still gives its
connection back and the lock up, on both engines."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import func, select, text

from storage import sqlite_inline
from storage.db import Database
from storage.models import InboxKey
from tests.conftest import fresh_database
from tests.support import counting_turns
from tests.unit.test_read_pool import NOW


@pytest.fixture
async def sqlite(tmp_path: Path) -> AsyncIterator[Database]:
    """SQLite only: PostgreSQL's answers arrive on the loop, turns by nature."""
    database = await fresh_database("sqlite", tmp_path)
    yield database
    await database.dispose()


async def test_the_health_check_takes_no_turn_of_the_loop_on_sqlite(sqlite: Database) -> None:
    """Its inline `SELECT 1` and the connection's return run straight through: under
    load every turn it waited (three, in SQLAlchemy's context exit) cost milliseconds."""
    db = sqlite
    assert await db.ping()  # the pool has its connection
    async with counting_turns() as turns:
        before = turns()
        assert await db.ping()
        assert turns() == before


async def test_leaving_a_write_transaction_frees_sqlite_s_writer_at_once(
    sqlite: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = sqlite
    monkeypatch.setattr(sqlite_inline, "YIELD_AFTER", 3600.0)  # no planned suspension
    async with counting_turns() as turns:
        async with db.transaction() as session:
            session.add(InboxKey(key="k-1", source="test", received_at=NOW))
            await session.flush()
            before = turns()
        assert turns() == before, "the COMMIT and the close ran without letting others in"
        assert not db.write_lock.locked
    async with db.read() as session:
        assert await session.scalar(select(func.count()).select_from(InboxKey)) == 1


async def test_a_cancelled_transaction_gives_everything_back(db: Database) -> None:
    inside = asyncio.Event()

    async def stuck() -> None:
        async with db.transaction() as session:
            session.add(InboxKey(key="k-lost", source="test", received_at=NOW))
            await session.flush()
            inside.set()
            await asyncio.Event().wait()  # until cancelled

    task = asyncio.create_task(stuck())
    await inside.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert db.engine.pool.checkedout() == 0  # type: ignore[attr-defined]
    assert not db.write_lock.locked
    async with db.transaction() as session:  # the writer works, and nothing was kept
        assert await session.scalar(select(func.count()).select_from(InboxKey)) == 0
        await session.execute(text("SELECT 1"))
