"""The database's bounds (storage/db.py): what counts as "unavailable", that a
statement over the bound is cut off by the server on PostgreSQL, and that the read
pool's wait for a connection is bounded too."""

from __future__ import annotations

import socket
from contextlib import AsyncExitStack

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from storage.db import DEFAULT_READ_POOL, Database, DatabaseBusy, is_unavailable
from tests.conftest import ONLY_PG, PG_URL


class _Orig(Exception):
    def __init__(self, sqlstate: str) -> None:
        super().__init__(sqlstate)
        self.sqlstate = sqlstate


def dbapi(cls: type[DBAPIError], sqlstate: str) -> DBAPIError:
    return cls("SELECT 1", {}, _Orig(sqlstate))


@pytest.mark.parametrize(
    ("exc", "unavailable"),
    [
        (TimeoutError(), True),  # asyncpg connect / command timeout
        (ConnectionRefusedError(), True),
        (socket.gaierror(), True),
        (PoolTimeout("QueuePool limit reached"), True),
        (DatabaseBusy("writer"), True),
        (OperationalError("SELECT 1", {}, Exception("database is locked")), True),
        (dbapi(DBAPIError, "57014"), True),  # statement_timeout cancelled it
        (dbapi(DBAPIError, "08006"), True),  # connection failure
        (dbapi(DBAPIError, "53300"), True),  # too many connections
        (dbapi(IntegrityError, "23505"), False),  # a bug or a race, not an outage
        (dbapi(DBAPIError, "22021"), False),  # bad input reached the driver
        (ValueError("x"), False),
    ],
)
def test_what_counts_as_the_database_being_unavailable(
    exc: BaseException, unavailable: bool
) -> None:
    assert is_unavailable(exc) is unavailable


@ONLY_PG
async def test_a_statement_over_the_bound_is_cancelled(db: Database) -> None:
    bounded = Database(PG_URL, statement_timeout=0.2)
    try:
        with pytest.raises(DBAPIError) as caught:
            async with bounded.read() as session:
                await session.execute(text("SELECT pg_sleep(5)"))
        assert is_unavailable(caught.value)
    finally:
        await bounded.dispose()


async def test_a_read_waits_for_a_pooled_connection_a_bounded_time(db: Database) -> None:
    """Every read connection busy: the next read gives up after `timeout` (a 503 at the
    edge) instead of queueing without end, and the health check, on connections of
    its own, neither waits behind the reads nor calls busy reads an outage."""
    bounded = Database(db.url, timeout=0.2)
    try:
        async with AsyncExitStack() as stack:
            for _ in range(DEFAULT_READ_POOL):
                session = await stack.enter_async_context(bounded.read())
                await session.execute(text("SELECT 1"))  # holds its connection
            with pytest.raises(PoolTimeout) as caught:
                async with bounded.read() as session:
                    await session.execute(text("SELECT 1"))
            assert is_unavailable(caught.value)
            assert await bounded.ping()
        async with bounded.read() as session:  # released: the pool serves again
            await session.execute(text("SELECT 1"))
    finally:
        await bounded.dispose()
