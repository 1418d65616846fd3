"""Shared fixtures: a migrated database on SQLite and, when RETURNHUB_TEST_PG names one,
on PostgreSQL too, so the same tests run on both engines.
"""

from __future__ import annotations

import asyncio
import os
import socket
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url

from storage.db import Database
from storage.migrate import upgrade


def _worker_database(url: str) -> str:
    """Under pytest-xdist each worker gets a database of its own (`<name>_gw0`, …), made
    on first use from the one RETURNHUB_TEST_PG names: the tests drop and rebuild the
    schema, so two workers must never share one."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    if not url or not worker:
        return url
    base = make_url(url)
    name = f"{base.database}_{worker}"

    async def create() -> None:
        conn = await asyncpg.connect(
            host=base.host, port=base.port or 5432, user=base.username,
            password=base.password, database=base.database,
        )  # fmt: skip
        try:
            found = await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name)
            if not found:
                await conn.execute(f'CREATE DATABASE "{name}"')
        finally:
            await conn.close()

    asyncio.run(create())
    return base.set(database=name).render_as_string(hide_password=False)


PG_URL = _worker_database(os.environ.get("RETURNHUB_TEST_PG", ""))

ENGINES = ["sqlite", pytest.param("pg", marks=pytest.mark.pg)]
# For what only PostgreSQL can show (replicas racing on row locks): the `db` fixture
# on the PostgreSQL engine alone.
ONLY_PG = pytest.mark.parametrize("db", [pytest.param("pg", marks=pytest.mark.pg)], indirect=True)


def pg_or_skip() -> str:
    """The PostgreSQL URL; fails in CI when unset (both engines are proven there), else skips."""
    if not PG_URL:
        if os.environ.get("CI"):  # CI must prove both engines, never skip one
            pytest.fail("RETURNHUB_TEST_PG is not set in CI")
        pytest.skip("RETURNHUB_TEST_PG is not set (CI always sets it)")
    return PG_URL


async def fresh_database(engine: str, tmp_path: Path) -> Database:
    """A database with the current schema and no rows, built through the migrations."""
    if engine == "sqlite":
        db = Database(f"sqlite+aiosqlite:///{tmp_path}/test.db")
    else:
        db = Database(pg_or_skip())
        async with db.engine.begin() as conn:
            await conn.execute(text("DROP SCHEMA public CASCADE"))
            await conn.execute(text("CREATE SCHEMA public"))
    await upgrade(db)
    return db


@pytest.fixture(params=ENGINES)
async def db(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Database]:
    database = await fresh_database(request.param, tmp_path)
    yield database
    await database.dispose()


@pytest.fixture(autouse=True)
def _no_internet(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Fail any connection that leaves loopback: tests talk only to the fakes."""
    real_connect = socket.socket.connect

    def guarded(self: socket.socket, address: object) -> object:
        host = address[0] if isinstance(address, tuple) else ""
        if host and not (
            host.startswith("127.") or host in ("::1", "localhost") or host.startswith("/")
        ):
            raise RuntimeError(f"test tried to reach {host!r}: use the fakes on loopback")
        return real_connect(self, address)  # type: ignore[arg-type]

    monkeypatch.setattr(socket.socket, "connect", guarded)
    yield
