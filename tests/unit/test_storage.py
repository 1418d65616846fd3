"""The unit of work on both engines: optimistic locking, atomic ids, serialized writers."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm.exc import StaleDataError

from storage.db import Database, next_counter_stmt
from storage.models import Case, InboxKey, Sequence

NOW = datetime(2026, 11, 21, 2, 0, tzinfo=UTC).replace(tzinfo=None)


def a_case(case_id: str = "RC-261121-0001") -> Case:
    return Case(
        id=case_id,
        channel="generic",
        shop="s",
        external_id=case_id,
        order_id="o",
        kind="refund_only",
        amount_fen=100,
        status="requested",
        created_at=NOW,
        updated_at=NOW,
        attachments=[],
        steps=[],
        items=[],
    )


async def test_a_stale_write_is_refused_by_the_version_column(db: Database) -> None:
    async with db.transaction() as session:
        session.add(a_case())
    first, second = db.sessions(), db.sessions()
    try:
        mine = await first.get(Case, "RC-261121-0001")
        theirs = await second.get(Case, "RC-261121-0001")
        assert mine is not None and theirs is not None and mine.version == 1
        mine.status = "pending_approval"
        await first.commit()
        theirs.status = "approved"
        with pytest.raises(StaleDataError):
            await second.commit()
    finally:
        await first.close()
        await second.close()
    async with db.read() as session:
        stored = await session.get(Case, "RC-261121-0001")
        assert stored is not None and (stored.status, stored.version) == ("pending_approval", 2)


async def test_case_numbers_are_unique_under_concurrent_intake(db: Database) -> None:
    async def take() -> int:
        async with db.transaction() as session:
            value: int = (
                await session.execute(next_counter_stmt(db, Sequence, "case-261121"))
            ).scalar_one()
            return value

    values = await asyncio.gather(*(take() for _ in range(40)))
    assert sorted(values) == list(range(1, 41))


async def test_concurrent_writers_never_see_database_is_locked(db: Database) -> None:
    async def write(n: int) -> None:
        async with db.transaction() as session:
            session.add(InboxKey(key=f"k{n}", source="test", received_at=NOW))
            await asyncio.sleep(0)  # yield inside the transaction: others must queue
            session.add(a_case(f"RC-261121-{n:04d}"))

    await asyncio.gather(*(write(n) for n in range(60)))
    async with db.read() as session:
        assert await session.scalar(select(func.count(Case.id))) == 60


async def test_a_failed_transaction_leaves_nothing(db: Database) -> None:
    with pytest.raises(RuntimeError):
        async with db.transaction() as session:
            session.add(InboxKey(key="k", source="test", received_at=NOW))
            await session.flush()
            raise RuntimeError("crash after the flush, before the commit")
    async with db.read() as session:
        assert await session.get(InboxKey, "k") is None


async def test_ping(db: Database) -> None:
    assert await db.ping()
    broken = Database("postgresql+asyncpg://postgres@127.0.0.1:1/none")
    assert not await broken.ping()
    await broken.dispose()
