"""Engine, sessions and the unit of work for SQLite (embedded) and PostgreSQL.

SQLite allows one writer at a time: we run it in WAL mode with a busy timeout
and serialize write transactions inside the process with an asyncio lock, so
concurrent webhooks queue instead of failing with "database is locked".
The lock serves its lanes in turn (storage/writelock.py), so the outbox and the
clock get the writer promptly while intake floods it.
PostgreSQL needs no such lock: row locks (FOR UPDATE / SKIP LOCKED) do the job
across any number of replicas.

Every wait is bounded, so a database that stops answering (a partition that holds
packets, a lock held for ever) turns into an error in seconds, which the edge
answers with 503 and the sender retries, instead of a request that hangs past every
platform's deadline: `timeout` bounds connecting and waiting for a pooled
connection; `statement_timeout` bounds each statement (PostgreSQL's
`statement_timeout` on the server, asyncpg's `command_timeout` on the client for a
server that went silent) and, on SQLite, the busy timeout and the wait for the
writer lock. A statement timeout of 0 means none (e.g. for a long migration).

Reads never wait for the writer: `read()` sessions come from their own engine, a
fixed pool of connections that only read. On SQLite they are WAL readers
(`PRAGMA query_only`), which see the last commit while the writer holds its lock;
the pool never overflows, so a burst of `/healthz` reuses its connections (and
aiosqlite's thread per connection) instead of opening and closing more. On
PostgreSQL, where MVCC already lets readers past writers, the separate pool is what
keeps a read from queueing behind write transactions that hold every pooled
connection; its sessions are `default_transaction_read_only`. A read session sees
one snapshot on both engines (SQLite: BEGIN on the reader; PostgreSQL: REPEATABLE
READ), so a page assembled from several SELECTs is consistent. PostgreSQL's pooled
connections are checked before use only when they sat idle or a sibling failed
(storage/liveness.py), not with a three-round-trip pre-ping at every checkout.
`ping` has two read-only connections of its own, so /healthz never queues for a
connection behind page reads. Write transactions and `ping` close in the caller's task
(storage/closing.py), not in the extra task SQLAlchemy's context managers wait for.
"""

from __future__ import annotations

import asyncio
import os
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, nullcontext
from functools import partial
from pathlib import Path
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine.url import make_url
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.exc import TimeoutError as SaTimeoutError
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.orm import Mapped

from storage import sqlite_inline
from storage.closing import connection_here, session_here
from storage.liveness import Liveness
from storage.writelock import DEFAULT_LANE, WriteLock

DEFAULT_TIMEOUT = 5.0
DEFAULT_STATEMENT_TIMEOUT = 10.0
# Connections the read pool keeps (fixed: no overflow). Reads are short; more
# concurrent readers than this queue for `timeout` seconds at most.
DEFAULT_READ_POOL = 4
# The health check's own readers: a load balancer asks one or two at a time.
HEALTH_POOL = 2


class DatabaseBusy(TimeoutError):
    """The database did not let us in within the bound (the SQLite writer lock)."""


class Database:
    """One engine, one session factory and (for SQLite) the writer lock."""

    def __init__(
        self,
        url: str,
        *,
        echo: bool = False,
        timeout: float = DEFAULT_TIMEOUT,
        statement_timeout: float = DEFAULT_STATEMENT_TIMEOUT,
        read_pool_size: int = DEFAULT_READ_POOL,
    ) -> None:
        self.url = url
        self.timeout = timeout
        self.statement_timeout = statement_timeout or None
        parsed = make_url(url)
        self.is_sqlite = parsed.get_backend_name() == "sqlite"
        kwargs: dict[str, Any] = {"echo": echo}
        self.checkpointer: sqlite_inline.Checkpointer | None = None
        if self.is_sqlite:
            if parsed.database and parsed.database != ":memory:":
                Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
                kwargs["pool_timeout"] = timeout  # in memory: one static connection
                if "uri" not in parsed.query:  # a file: URI keeps SQLite's own checkpoints
                    self.checkpointer = sqlite_inline.Checkpointer(
                        os.path.abspath(parsed.database)
                    )
            # The writer runs on the loop, not on aiosqlite's thread (storage/sqlite_inline.py).
            kwargs["connect_args"] = {
                "async_creator_fn": partial(
                    sqlite_inline.connect,
                    busy_timeout=self.statement_timeout or 3600,
                    checkpointer=self.checkpointer,
                )
            }
        else:
            kwargs.update(pool_size=10, max_overflow=10, pool_timeout=timeout)
            kwargs["connect_args"] = _pg_timeouts(timeout, self.statement_timeout)
        self.engine: AsyncEngine = create_async_engine(url, **kwargs)
        if self.is_sqlite:
            event.listen(self.engine.sync_engine, "connect", _sqlite_pragmas)
            event.listen(self.engine.sync_engine, "begin", _sqlite_write_begin)
        self.sessions = async_sessionmaker(self.engine, expire_on_commit=False)
        self.write_lock = WriteLock()
        self.read_engine: AsyncEngine = self._reader(echo, read_pool_size)
        # `ping`'s own connections, so /healthz never queues behind page reads.
        self.health_engine: AsyncEngine = self._reader(echo, HEALTH_POOL, inline=True)
        self.liveness: Liveness | None = None
        if not self.is_sqlite:
            engines = (self.engine, self.read_engine, self.health_engine)
            self.liveness = Liveness(engines, timeout)
        self.read_sessions = async_sessionmaker(self.read_engine, expire_on_commit=False)

    def _reader(self, echo: bool, size: int, *, inline: bool = False) -> AsyncEngine:
        """The read pool's engine (see the module docstring); in-memory SQLite has one
        connection for everything, so there it is the writer's engine. `inline`: SQLite's
        calls run on the loop (storage/sqlite_inline.py), for the health check."""
        parsed = make_url(self.url)
        kwargs: dict[str, Any] = {
            "echo": echo,
            "pool_size": size,
            "max_overflow": 0,
            "pool_timeout": self.timeout,
            # A session or connection always ends its transaction before it checks the
            # connection in, and nothing else starts one: the reset's ROLLBACK (a round
            # trip to aiosqlite's thread) would be one more hop per read.
            "pool_reset_on_return": None,
        }
        if not self.is_sqlite:
            connect_args = _pg_timeouts(self.timeout, self.statement_timeout)
            settings = connect_args.setdefault("server_settings", {})
            settings["default_transaction_read_only"] = "on"
            return create_async_engine(
                self.url,
                **kwargs,
                isolation_level="REPEATABLE READ",
                connect_args=connect_args,
            )
        if not parsed.database or parsed.database == ":memory:":
            return self.engine
        bound = self.statement_timeout or 3600
        lite_args: dict[str, Any] = {"timeout": bound}
        busy_ms: int | None = int(bound * 1000)
        if inline:
            lite_args = {
                "async_creator_fn": partial(
                    sqlite_inline.connect, busy_timeout=bound, yields=False
                )
            }
            busy_ms = None  # it waits for locks itself
        engine = create_async_engine(self.url, **kwargs, connect_args=lite_args)
        event.listen(
            engine.sync_engine, "connect", lambda conn, _record: _sqlite_reader(conn, busy_ms)
        )
        event.listen(engine.sync_engine, "begin", _sqlite_read_begin)
        return engine

    @asynccontextmanager
    async def transaction(self, lane: str = DEFAULT_LANE) -> AsyncIterator[AsyncSession]:
        """A write transaction: everything inside commits together or not at all.

        `lane` names the kind of writer queueing for SQLite's one writer (the outbox
        and the clock have their own, so intake cannot starve them)."""
        writer = self._writer(lane) if self.is_sqlite else nullcontext()
        async with writer, session_here(self.sessions()) as session, session.begin():
            yield session

    @asynccontextmanager
    async def _writer(self, lane: str) -> AsyncIterator[None]:
        """The in-process SQLite writer lock, waited for no longer than a statement may run."""
        try:
            async with asyncio.timeout(self.statement_timeout):
                await self.write_lock.acquire(lane)
        except TimeoutError:
            raise DatabaseBusy(
                f"waited {self.statement_timeout} s for the SQLite writer"
            ) from None
        try:
            yield
        finally:
            self.write_lock.release()

    @asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncSession]:
        """A read-only session from the read pool: it never waits for the writer (the
        SQLite lock, or PostgreSQL write transactions holding the writer's pool), and a
        write through it fails instead of bypassing the writer."""
        async with self.read_sessions() as session:
            yield session

    def for_update(self, skip_locked: bool = False) -> dict[str, Any]:
        """Arguments for `select(...).with_for_update(**...)`; SQLite ignores them."""
        return {"skip_locked": skip_locked} if not self.is_sqlite else {}

    async def ping(self) -> bool:
        """Whether the database answers `SELECT 1` within `timeout` seconds, through
        read-only connections of its own: neither a busy writer nor page reads holding
        the read pool make a healthy database look down or slow to answer.

        The statement goes straight to the driver, outside any transaction: one round
        trip (not BEGIN, SELECT, ROLLBACK), as the load balancer asks every few seconds
        and a health check under load should cost next to nothing. A pooled connection
        that died (the database restarted) is dropped, the pool's others are checked
        before their next use (storage/liveness.py), and the question is asked once more
        on a connection that works, so a healthy database never looks down."""
        try:
            async with asyncio.timeout(self.timeout):
                return await self._select_one() or await self._select_one()
        except Exception:  # noqa: BLE001 - any failure means "unreachable" to /healthz
            return False

    async def _select_one(self) -> bool:
        async with connection_here(self.health_engine) as conn:
            driver: Any = (await conn.get_raw_connection()).driver_connection
            try:
                if self.is_sqlite:
                    await driver.execute_fetchall("SELECT 1")
                else:
                    await driver.fetchval("SELECT 1")
            except Exception:  # noqa: BLE001 - the connection is gone; the caller may retry
                await conn.invalidate()
                if self.liveness is not None:
                    self.liveness.suspect()
                return False
        return True

    async def dispose(self) -> None:
        for reader in (self.health_engine, self.read_engine):
            if reader is not self.engine:
                await reader.dispose()
        await self.engine.dispose()
        if self.checkpointer is not None:
            await asyncio.to_thread(self.checkpointer.close)


# PostgreSQL aborts one side of a deadlock (40P01) or a serialization conflict (40001);
# running the transaction again on fresh data is the documented cure.
RETRYABLE_SQLSTATES = frozenset({"40P01", "40001"})


def is_retryable(exc: BaseException) -> bool:
    """Whether `exc` is the database aborting us to break a deadlock or conflict."""
    if not isinstance(exc, DBAPIError):
        return False
    orig = exc.orig
    return (getattr(orig, "sqlstate", None) or getattr(orig, "pgcode", None)) in (
        RETRYABLE_SQLSTATES
    )


# SQLSTATE classes that mean "the database is not answering", not "the query is wrong":
# 08 connection exception, 53 insufficient resources, 57 operator intervention (57014
# is statement_timeout cancelling us), 58 system error.
_UNAVAILABLE_CLASSES = ("08", "53", "57", "58")


def is_unavailable(exc: BaseException) -> bool:
    """Whether `exc` says the database is unreachable, overloaded or too slow (a retry
    later may succeed), as opposed to a bug or a constraint: the edge answers 503."""
    if isinstance(exc, TimeoutError | ConnectionError | socket.gaierror | SaTimeoutError):
        return True  # connect / statement / pool-checkout / writer-lock bounds, refused, DNS
    if not isinstance(exc, DBAPIError):
        return False
    if exc.connection_invalidated or isinstance(exc, OperationalError):
        return True  # SQLite: database is locked, unable to open, disk I/O error
    state = getattr(exc.orig, "sqlstate", None) or getattr(exc.orig, "pgcode", None) or ""
    return str(state)[:2] in _UNAVAILABLE_CLASSES


def _pg_timeouts(timeout: float, statement_timeout: float | None) -> dict[str, Any]:
    """asyncpg connect arguments: connect bound, and the statement bound both server-side
    (the server cancels a slow statement) and client-side (a server that went silent)."""
    args: dict[str, Any] = {"timeout": timeout}
    if statement_timeout:
        args["command_timeout"] = statement_timeout + 1  # let the server's cancel win
        args["server_settings"] = {"statement_timeout": str(int(statement_timeout * 1000))}
    return args


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    """The writer (storage/sqlite_inline.py waits for other processes' locks itself)."""
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.close()


def _sqlite_reader(dbapi_conn: Any, busy_ms: int | None) -> None:
    """A reader: the driver leaves transactions to us (`_sqlite_read_begin`), and it may not
    write. WAL is the file's mode, set by the writer's first connection. `busy_ms` None:
    the connection waits for locks itself (storage/sqlite_inline.py)."""
    dbapi_conn.isolation_level = None
    cur = dbapi_conn.cursor()
    if busy_ms is not None:
        cur.execute(f"PRAGMA busy_timeout={busy_ms}")
    cur.execute("PRAGMA query_only=ON")
    cur.close()


def _sqlite_read_begin(conn: Any) -> None:
    """One snapshot per read session: the sqlite3 driver would run each SELECT alone."""
    conn.exec_driver_sql("BEGIN")


# Execution option set by `allow_savepoints`: emit BEGIN as the transaction starts.
REAL_BEGIN = "returnhub_real_begin"


async def allow_savepoints(session: AsyncSession) -> None:
    """Call first in a write transaction that uses `session.begin_nested()`.

    The sqlite3 driver's legacy mode (aiosqlite too, before Python 3.12's
    `autocommit`) emits BEGIN only before INSERT/UPDATE/DELETE, never before SELECT
    or SAVEPOINT, so a savepoint opened first would escape the transaction (its
    RELEASE commits). Following SQLAlchemy's "Transactions with SQLite and the
    sqlite3 driver", we emit BEGIN ourselves, IMMEDIATE since this is a write
    transaction (its reads then never go stale). Only these transactions change:
    the driver's mode stays as it is for every other one. PostgreSQL needs nothing.
    """
    await session.connection(execution_options={REAL_BEGIN: True})


def _sqlite_write_begin(conn: Any) -> None:
    if conn.get_execution_options().get(REAL_BEGIN):
        conn.exec_driver_sql("BEGIN IMMEDIATE")


def dialect_insert(db: Database, table: Any) -> Any:
    """The engine's own INSERT construct: both have `on_conflict_do_nothing/update`."""
    if db.is_sqlite:
        from sqlalchemy.dialects.sqlite import insert
    else:
        from sqlalchemy.dialects.postgresql import insert  # type: ignore[assignment]
    return insert(table)


def next_counter_stmt(db: Database, table: Any, name: str, by: int = 1) -> Any:
    """`INSERT … ON CONFLICT DO UPDATE value+by RETURNING value`, atomic on both engines:
    the caller owns the `by` values up to the one returned."""
    value: Mapped[int] = table.value
    stmt = dialect_insert(db, table).values(name=name, value=by)
    return stmt.on_conflict_do_update(
        index_elements=[table.name], set_={"value": value + by}
    ).returning(table.value)
