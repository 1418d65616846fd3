"""The SQLite writer on the loop (storage/sqlite_inline.py): another process's lock is
waited for without stopping the loop and within the bound, only what starts a
transaction is tried again, a stale snapshot fails at once, checkpoints run on their
own thread and keep the log bounded, and another connection sees what was committed."""

from __future__ import annotations

import asyncio
import os
import sqlite3
import threading
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.exc import OperationalError

from storage import sqlite_inline
from storage.db import Database, allow_savepoints, is_unavailable
from storage.sqlite_inline import Checkpointer
from tests.support import counting_turns


@pytest.fixture
async def sqlite(tmp_path: Path) -> AsyncIterator[Database]:
    db = Database(f"sqlite+aiosqlite:///{tmp_path}/w.db", statement_timeout=2.0)
    async with db.transaction() as session:
        await session.execute(text("CREATE TABLE t (n INTEGER PRIMARY KEY, v TEXT)"))
    yield db
    await db.dispose()


def _hold_lock(path: str, seconds: float, started: threading.Event) -> None:
    """Another process's writer: BEGIN IMMEDIATE, hold it, commit."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("BEGIN IMMEDIATE")
    conn.execute("INSERT INTO t (v) VALUES ('other')")
    started.set()
    time.sleep(seconds)
    conn.execute("COMMIT")
    conn.close()


async def _ticks_while(coro: asyncio.Future[object] | object) -> tuple[object, int]:
    """Run `coro`, counting how often the loop got round to another task meanwhile."""
    ticks = 0
    done = asyncio.Event()

    async def ticker() -> None:
        nonlocal ticks
        while not done.is_set():
            ticks += 1
            await asyncio.sleep(0.01)

    task = asyncio.create_task(ticker())
    try:
        result = await coro  # type: ignore[misc]
    finally:
        done.set()
        await task
    return result, ticks


async def _write(db: Database, value: str) -> None:
    async with db.transaction() as session:
        await allow_savepoints(session)
        await session.execute(text("INSERT INTO t (v) VALUES (:v)"), {"v": value})


async def test_the_writer_waits_for_another_process_without_stopping_the_loop(
    sqlite: Database,
) -> None:
    path = str(sqlite.engine.url.database)
    started = threading.Event()
    holder = threading.Thread(target=_hold_lock, args=(path, 0.4, started))
    holder.start()
    started.wait(5)
    begun = time.monotonic()
    _, ticks = await _ticks_while(_write(sqlite, "ours"))
    waited = time.monotonic() - begun
    holder.join()
    assert waited >= 0.3  # it really waited for the lock
    assert ticks >= 10  # and the loop served others meanwhile (a blocked loop: ~1)
    async with sqlite.read() as session:
        values = (await session.scalars(text("SELECT v FROM t ORDER BY n"))).all()
    assert values == ["other", "ours"]


async def test_a_lock_held_past_the_bound_is_an_outage_and_writes_nothing(
    tmp_path: Path,
) -> None:
    db = Database(f"sqlite+aiosqlite:///{tmp_path}/b.db", statement_timeout=0.3)
    try:
        async with db.transaction() as session:
            await session.execute(text("CREATE TABLE t (n INTEGER PRIMARY KEY, v TEXT)"))
        started = threading.Event()
        holder = threading.Thread(target=_hold_lock, args=(str(tmp_path / "b.db"), 2.0, started))
        holder.start()
        started.wait(5)
        begun = time.monotonic()
        with pytest.raises(OperationalError) as caught:
            await _write(db, "ours")
        assert 0.25 <= time.monotonic() - begun < 1.5  # the bound, not the holder's 2 s
        assert "locked" in str(caught.value)
        assert is_unavailable(caught.value)  # the edge answers 503, the sender retries
        holder.join()
        async with db.read() as session:
            values = (await session.scalars(text("SELECT v FROM t"))).all()
        assert values == ["other"]
    finally:
        await db.dispose()


async def test_a_stale_snapshot_fails_at_once(sqlite: Database) -> None:
    """A deferred transaction that read, then finds another writer committed since,
    can never write: SQLite says SQLITE_BUSY_SNAPSHOT, and waiting would not cure it."""
    path = str(sqlite.engine.url.database)
    begun = 0.0
    with pytest.raises(OperationalError) as caught:
        async with sqlite.sessions() as session, session.begin():
            await session.execute(text("BEGIN"))
            await session.execute(text("SELECT count(*) FROM t"))
            other = sqlite3.connect(path, isolation_level=None)
            other.execute("INSERT INTO t (v) VALUES ('other')")
            other.close()
            begun = time.monotonic()
            await session.execute(text("INSERT INTO t (v) VALUES ('stale')"))
    assert caught.value.orig.sqlite_errorcode == 517  # type: ignore[union-attr]  # BUSY_SNAPSHOT
    assert time.monotonic() - begun < 1.0  # not the 2 s bound: raised at once


async def test_a_statement_inside_the_transaction_is_never_run_twice(sqlite: Database) -> None:
    """Only what starts the transaction (or the COMMIT) is tried again after BUSY: a
    statement inside it may have applied in part (an executemany in a journal mode), so
    its BUSY is raised as it is, however long the bound."""
    path = str(sqlite.engine.url.database)
    started = threading.Event()
    with pytest.raises(OperationalError) as caught:
        async with sqlite.sessions() as session, session.begin():
            await session.execute(text("BEGIN"))
            await session.execute(text("SELECT count(*) FROM t"))
            holder = threading.Thread(target=_hold_lock, args=(path, 0.5, started))
            holder.start()
            started.wait(5)
            begun = time.monotonic()
            try:
                await session.execute(text("INSERT INTO t (v) VALUES ('inside')"))
            finally:
                elapsed = time.monotonic() - begun
    holder.join()
    assert caught.value.orig.sqlite_errorcode == sqlite3.SQLITE_BUSY  # type: ignore[union-attr]
    assert elapsed < 0.4  # it did not wait out the holder's 0.5 s
    async with sqlite.read() as session:
        values = (await session.scalars(text("SELECT v FROM t"))).all()
    assert values == ["other"]


async def test_checkpoints_run_off_the_loop_and_keep_the_log_bounded(
    sqlite: Database,
) -> None:
    checkpointer = sqlite.checkpointer
    assert isinstance(checkpointer, Checkpointer)
    checkpointer.interval = 0.0  # a checkpoint after every commit
    loop_thread = threading.get_ident()
    threads: set[int] = set()
    real = checkpointer._checkpoint

    def spy() -> None:
        threads.add(threading.get_ident())
        real()

    checkpointer._checkpoint = spy  # type: ignore[method-assign]
    for _ in range(60):
        async with sqlite.transaction() as session:
            await session.execute(text("INSERT INTO t (v) VALUES (:v)"), [{"v": "x" * 4000}] * 10)
        if checkpointer._pending is not None:  # let each finish: the test is not a race
            await asyncio.to_thread(checkpointer._pending.result)
    assert checkpointer.runs >= 1
    assert threads and loop_thread not in threads
    path = str(sqlite.engine.url.database)
    async with sqlite.engine.connect() as conn:  # the writer never checkpoints itself
        assert (await conn.exec_driver_sql("PRAGMA wal_autocheckpoint")).scalar() == 0
    assert os.stat(path + "-wal").st_size < 1 << 20  # unchecked: 60 × 40 KB, 2.4 MB+


async def test_a_committed_write_is_seen_by_another_connection(tmp_path: Path) -> None:
    """What the writer committed is there for a plain sqlite3 connection (another process's
    view of the file), checkpointed or not."""
    url = f"sqlite+aiosqlite:///{tmp_path}/d.db"
    db = Database(url)
    async with db.transaction() as session:
        await session.execute(text("CREATE TABLE t (n INTEGER PRIMARY KEY, v TEXT)"))
    await _write(db, "kept")
    conn = sqlite3.connect(tmp_path / "d.db")
    assert conn.execute("SELECT v FROM t").fetchall() == [("kept",)]
    conn.close()
    await db.dispose()


async def test_a_transaction_lets_the_loop_in_once_its_time_is_up(
    sqlite: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    """It holds the write lock throughout, and on a busy loop each suspension waits out
    a whole turn, so it suspends once `YIELD_AFTER` has passed, not per statement."""

    async def turns_during(statements: int) -> int:
        async with counting_turns() as turns:
            before = turns()
            async with sqlite.transaction() as session:
                for n in range(statements):
                    await session.execute(text("INSERT INTO t (v) VALUES (:v)"), {"v": str(n)})
            return turns() - before

    monkeypatch.setattr(sqlite_inline, "YIELD_AFTER", 0.0)
    every = await turns_during(100)
    monkeypatch.setattr(sqlite_inline, "YIELD_AFTER", 3600.0)
    seldom = await turns_during(100)
    assert every >= 100, "a suspension before each statement once the time is up"
    assert seldom == 0, "none in between, nor on the way out (storage/closing.py)"
    async with sqlite.read() as session:
        assert await session.scalar(text("SELECT count(*) FROM t")) == 200
