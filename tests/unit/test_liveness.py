"""Dead pooled connections (storage/liveness.py, `Database.ping`): a health check that
meets one still answers for the database, and the pool replaces the rest before their
next use; a busy PostgreSQL pool checks nothing at checkout, an idle one checks once."""

from __future__ import annotations

from typing import Any

import asyncpg
import pytest
from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncEngine

from storage.db import Database
from storage.models import Case
from tests.conftest import ONLY_PG


async def _pooled(engine: AsyncEngine, count: int) -> list[Any]:
    """The driver connections of `count` pooled connections, checked in again after."""
    conns = [await engine.connect() for _ in range(count)]
    drivers = [(await c.get_raw_connection()).driver_connection for c in conns]
    for conn in conns:
        await conn.close()
    return drivers


async def _kill(db: Database, drivers: list[Any]) -> None:
    """Those connections die under the pool: PostgreSQL ends their backends (as a restart
    does); an SQLite connection is closed."""
    if db.is_sqlite:
        for driver in drivers:
            await driver.close()
        return
    pids = [driver.get_server_pid() for driver in drivers]
    async with db.engine.connect() as conn:
        for pid in pids:
            await conn.execute(text("SELECT pg_terminate_backend(:pid, 5000)"), {"pid": pid})


async def test_a_health_check_and_reads_get_past_dead_pooled_connections(db: Database) -> None:
    """On PostgreSQL every pooled connection dies (a restart); an SQLite file's
    connections do not die, but a health check that met one would ask again."""
    health = await _pooled(db.health_engine, 2)
    if db.is_sqlite:
        await _kill(db, health[:1])
    else:
        await _kill(db, health + await _pooled(db.read_engine, 2))
    assert await db.ping()  # the first connection it met was dead; it asked again
    for _ in range(3):  # on PostgreSQL the other dead one is found before it is used
        async with db.read() as session:
            assert await session.scalar(select(func.count()).select_from(Case)) == 0


@ONLY_PG
async def test_a_busy_pool_checks_no_connection_an_idle_one_checks_once(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Not SQLAlchemy's pre-ping (a BEGIN, a query and a ROLLBACK at every checkout)."""
    checks: list[str] = []
    real, real_row = asyncpg.Connection.fetchval, asyncpg.Connection.fetchrow

    async def counting(self: asyncpg.Connection, query: str, *args: Any, **kw: Any) -> Any:
        checks.append(query)
        return await real(self, query, *args, **kw)

    async def pre_ping(self: asyncpg.Connection, query: str, *args: Any, **kw: Any) -> Any:
        checks.append(query)  # SQLAlchemy's pre-ping: fetchrow(";") in a transaction
        return await real_row(self, query, *args, **kw)

    async def read() -> None:
        async with db.read() as session:
            await session.scalar(select(func.count()).select_from(Case))

    await read()
    assert await db.ping()
    monkeypatch.setattr(asyncpg.Connection, "fetchval", counting)
    monkeypatch.setattr(asyncpg.Connection, "fetchrow", pre_ping)
    for _ in range(5):
        await read()
    assert checks == []
    assert await db.ping()
    assert checks == ["SELECT 1"]  # its own question, in one round trip: no pre-ping
    liveness = db.liveness
    assert liveness is not None
    monkeypatch.setattr(liveness, "idle", -1.0)  # every connection has now sat "too long"
    assert await db.ping()
    assert checks == ["SELECT 1"] * 3  # the check at checkout, then the question
