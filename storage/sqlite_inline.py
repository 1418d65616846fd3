"""The SQLite writer's connection, driven on the event loop instead of a thread.

aiosqlite runs every call on a thread of its own: a cursor, its execute, its
fetch and its close are four hand-offs per statement, each a thread wake-up, a
wake-up of the loop and two GIL exchanges. Measured here, that is ~190 µs of CPU
for a lookup SQLite answers in ~6 µs, and it is most of what a batch of intake
costs (docs/performance.md, "Fourth pass"). The writer's statements are short
and indexed, and SQLite in WAL mode with `synchronous=NORMAL` does no fsync at
a commit, so this connection runs them inline: it has the aiosqlite interface
SQLAlchemy's aiosqlite dialect drives (connect with `async_creator_fn`), and its
coroutines suspend only to let the loop in before a statement once `YIELD_AFTER` has
passed since they last did, and while they wait for a lock.

Not before every statement: the writer holds SQLite's lock for its whole
transaction, and on a busy loop each suspension waits out a full turn of it (a few
ms). A handling batch of 60 card clicks, ~900 statements, held the lock for 1.46 s
that way, and every ack queued behind it (click p99 1.3-1.5 s, p50 70 ms).

Two things could still stall the loop, and neither is left to SQLite:

- **Waiting for another process's lock.** The connection's own busy timeout is
  0; a statement SQLite answers SQLITE_BUSY is tried again after an
  `asyncio.sleep`, until `busy_timeout` has passed (then the same
  "database is locked" the driver would raise), if it starts the transaction or
  is its COMMIT (`retrying`). The loop serves everyone else meanwhile. A stale
  snapshot (SQLITE_BUSY_SNAPSHOT) cannot succeed by waiting and is raised at once,
  as SQLite itself does.
- **Checkpoints.** They copy the log's pages back into the database file and
  fsync it. The connection's automatic checkpoint is off; at most once a second
  after a commit, a `Checkpointer` runs a PASSIVE checkpoint (which waits for no
  one and holds up no one) on a thread of its own.

The health check's connections (storage/db.py `ping`, a `SELECT 1` that touches no
page) run inline too: under load, a thread's answer waits for the GIL and a turn of a
busy loop, which put /healthz's p99 past 50 ms. The read pool stays on aiosqlite: a
dashboard's month of aggregates may take a while, and on a thread it never holds up
the loop.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import threading
import time
from collections.abc import Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

log = logging.getLogger(__name__)

RETRY_SECONDS = 0.005  # the first wait after SQLITE_BUSY; doubling up to 50 ms
YIELD_AFTER = 0.002  # s since this connection last suspended, before it does again
BUSY = (sqlite3.SQLITE_BUSY, getattr(sqlite3, "SQLITE_BUSY_RECOVERY", 261))


def _busy(exc: sqlite3.OperationalError) -> bool:
    return getattr(exc, "sqlite_errorcode", None) in BUSY


class InlineCursor:
    """aiosqlite's Cursor interface over a sqlite3 cursor, without the thread."""

    __slots__ = ("_conn", "_cursor")

    def __init__(self, conn: InlineConnection, cursor: sqlite3.Cursor) -> None:
        self._conn = conn
        self._cursor = cursor

    async def __aenter__(self) -> InlineCursor:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def execute(self, sql: str, parameters: Sequence[Any] = ()) -> InlineCursor:
        await self._conn.retrying(self._cursor.execute, sql, parameters)
        return self

    async def executemany(self, sql: str, parameters: Iterable[Sequence[Any]]) -> InlineCursor:
        rows = parameters if isinstance(parameters, list) else list(parameters)
        await self._conn.retrying(self._cursor.executemany, sql, rows)
        return self

    async def fetchone(self) -> Any:
        return self._cursor.fetchone()

    async def fetchmany(self, size: int | None = None) -> list[Any]:
        return self._cursor.fetchmany(size if size is not None else self._cursor.arraysize)

    async def fetchall(self) -> list[Any]:
        return self._cursor.fetchall()

    async def nextset(self) -> None:
        return None

    async def setinputsizes(self, *sizes: Any) -> None:
        return None

    async def close(self) -> None:
        self._cursor.close()

    @property
    def description(self) -> Any:
        return self._cursor.description

    @property
    def rowcount(self) -> int:
        return self._cursor.rowcount

    @property
    def lastrowid(self) -> int | None:
        return self._cursor.lastrowid

    @property
    def arraysize(self) -> int:
        return self._cursor.arraysize

    @arraysize.setter
    def arraysize(self, value: int) -> None:
        self._cursor.arraysize = value


class _Now:
    """What the dialect's isolation-level setter queues on aiosqlite's thread: run it."""

    @staticmethod
    def put_nowait(job: tuple[asyncio.Future[Any], Any]) -> None:
        future, function = job
        try:
            future.set_result(function())
        except Exception as exc:  # noqa: BLE001 - handed to whoever awaits it
            future.set_exception(exc)


class Checkpointer:
    """PASSIVE checkpoints of one database file, on a thread of its own.

    SQLite's automatic checkpoint would run inside the commit that crosses 1,000
    pages, on the loop. Here a commit asks for one at most every `interval` seconds
    (a clock read otherwise); with nothing new in the log it costs next to nothing."""

    def __init__(self, path: str, *, interval: float = 1.0) -> None:
        self.path = path
        self.interval = interval
        self.runs = 0  # checkpoints completed (tests)
        self._asked = 0.0
        self._pending: Future[None] | None = None
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="sqlite-checkpoint")
        self._local = threading.local()

    def after_commit(self) -> None:
        now = time.monotonic()
        if now - self._asked < self.interval or (self._pending and not self._pending.done()):
            return
        self._asked = now
        self._pending = self._pool.submit(self._checkpoint)

    def _checkpoint(self) -> None:
        conn = getattr(self._local, "conn", None)
        try:
            if conn is None:
                conn = self._local.conn = sqlite3.connect(self.path, timeout=0)
            conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
            self.runs += 1
        except sqlite3.Error as exc:  # a later commit asks again
            log.warning("sqlite checkpoint of %s failed: %s", self.path, exc)

    def close(self) -> None:
        """Wait for a running checkpoint and close its connection."""

        def closing() -> None:
            conn = getattr(self._local, "conn", None)
            if conn is not None:
                conn.close()
                self._local.conn = None

        self._pool.submit(closing).result()


class InlineConnection:
    """aiosqlite's Connection interface (what SQLAlchemy uses of it), run inline."""

    _tx = _Now()

    def __init__(
        self,
        connection: sqlite3.Connection,
        busy_timeout: float,
        checkpointer: Checkpointer | None,
        yields: bool,
    ) -> None:
        self._connection: sqlite3.Connection | None = connection
        self.busy_timeout = busy_timeout
        self._checkpointer = checkpointer
        self._yields = yields
        self._resumed = 0.0  # when the loop last let us run again (monotonic)

    @property
    def _conn(self) -> sqlite3.Connection:
        if self._connection is None:  # the driver's own error: SQLAlchemy calls it a disconnect
            raise sqlite3.ProgrammingError("Cannot operate on a closed database.")
        return self._connection

    async def retrying(self, fn: Any, *args: Any, commit: bool = False) -> Any:
        """`fn(*args)`, tried again while another process holds SQLite's lock.

        Only a statement that starts the transaction (BEGIN IMMEDIATE, or the first
        write, before which the driver begins) or the COMMIT is tried again: neither
        has changed anything when SQLite answers BUSY. In WAL mode nothing else meets
        another process's lock; in a journal mode a statement inside the transaction
        may, after part of an executemany applied, and that BUSY is raised as it is."""
        if self._yields and time.monotonic() - self._resumed >= YIELD_AFTER:
            await asyncio.sleep(0)  # let the loop serve others (see the module docstring)
            self._resumed = time.monotonic()
        retry = commit or not self._conn.in_transaction
        deadline = None
        wait = RETRY_SECONDS
        while True:
            try:
                return fn(*args)
            except sqlite3.OperationalError as exc:
                if not retry or not _busy(exc):
                    raise
                now = time.monotonic()
                deadline = deadline if deadline is not None else now + self.busy_timeout
                if now >= deadline:
                    raise
            await asyncio.sleep(min(wait, max(0.0, deadline - now)))
            wait = min(wait * 2, 0.05)

    def cursor(self) -> InlineCursor:
        return InlineCursor(self, self._conn.cursor())

    async def execute(self, sql: str, parameters: Sequence[Any] = ()) -> InlineCursor:
        return await self.cursor().execute(sql, parameters)

    async def execute_fetchall(self, sql: str, parameters: Sequence[Any] = ()) -> list[Any]:
        cursor = await self.execute(sql, parameters)
        try:
            return await cursor.fetchall()
        finally:
            await cursor.close()

    async def commit(self) -> None:
        await self.retrying(self._conn.commit, commit=True)
        if self._checkpointer is not None:
            self._checkpointer.after_commit()

    async def rollback(self) -> None:
        self._conn.rollback()

    async def close(self) -> None:
        self.stop()

    def stop(self) -> None:
        """Close now (SQLAlchemy's terminate); closing again does nothing."""
        if self._connection is not None:
            self._connection.close()
            self._connection = None

    async def create_function(self, *args: Any, **kwargs: Any) -> None:
        self._conn.create_function(*args, **kwargs)

    @property
    def isolation_level(self) -> str | None:
        return self._conn.isolation_level

    @property
    def in_transaction(self) -> bool:
        return self._conn.in_transaction


async def connect(
    database: str,
    *,
    busy_timeout: float,
    checkpointer: Checkpointer | None = None,
    yields: bool = True,
    **kwargs: Any,
) -> InlineConnection:
    """`async_creator_fn` for SQLAlchemy's aiosqlite dialect: the arguments it computed
    from the URL, with SQLite's own busy wait replaced by ours, and its automatic
    checkpoint by `checkpointer` (with none, SQLite's own stays on). `yields`: let the
    loop in between statements (the writer; not the health check's `SELECT 1`)."""
    kwargs["timeout"] = 0
    kwargs["check_same_thread"] = False  # the pool may close it from a finalizer
    connection = sqlite3.connect(database, **kwargs)
    connection.execute("PRAGMA busy_timeout=0")
    if checkpointer is not None:
        connection.execute("PRAGMA wal_autocheckpoint=0")
    return InlineConnection(connection, busy_timeout, checkpointer, yields)
