"""`once`: a lost race is retried on fresh data; anything else surfaces."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession

from handlers.inbox import DUPLICATE, once
from storage.db import Database
from storage.models import InboxKey
from tests.unit.test_flow import make_ctx


class DriverError(Exception):
    def __init__(self, sqlstate: str) -> None:
        super().__init__(f"sqlstate {sqlstate}")
        self.sqlstate = sqlstate


@pytest.mark.parametrize("sqlstate", ["40P01", "40001"])
async def test_a_deadlock_victim_is_run_again(db: Database, sqlstate: str) -> None:
    ctx, runs = make_ctx(db), []

    async def work(session: AsyncSession) -> str:
        runs.append(1)
        if len(runs) == 1:
            raise DBAPIError("UPDATE cases …", {}, DriverError(sqlstate))
        return "done"

    assert await once(ctx, "k1", "test", work) == "done"
    assert await once(ctx, "k1", "test", work) is DUPLICATE
    assert len(runs) == 2
    async with db.read() as session:
        assert await session.scalar(select(func.count(InboxKey.key))) == 1


async def test_other_database_errors_are_not_retried(db: Database) -> None:
    ctx, runs = make_ctx(db), []

    async def work(session: AsyncSession) -> None:
        runs.append(1)
        raise DBAPIError("INSERT …", {}, DriverError("22001"))  # value too long

    with pytest.raises(DBAPIError):
        await once(ctx, "k2", "test", work)
    assert len(runs) == 1
    async with db.read() as session:
        assert await session.get(InboxKey, "k2") is None
