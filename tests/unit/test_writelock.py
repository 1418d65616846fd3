"""SQLite's writer is shared in turns (storage/writelock.py), and savepoints stay inside
their transaction on both engines (storage/db.py `allow_savepoints`)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from storage import timers
from storage.db import Database, allow_savepoints
from storage.models import Timer
from storage.writelock import WriteLock


@asynccontextmanager
async def turn(lock: WriteLock, lane: str) -> AsyncIterator[None]:
    await lock.acquire(lane)
    try:
        yield
    finally:
        lock.release()


async def hold(lock: WriteLock, lane: str, order: list[str], gate: asyncio.Event) -> None:
    async with turn(lock, lane):
        order.append(lane)
        await gate.wait()


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def test_waiters_of_one_lane_are_served_in_arrival_order() -> None:
    lock, order, gate = WriteLock(), [], asyncio.Event()
    gate.set()
    async with turn(lock, "a"):
        tasks = []
        for i in range(5):
            tasks.append(asyncio.create_task(hold(lock, f"a{i}", order, gate)))
            await settle()
    await asyncio.gather(*tasks)
    assert order == [f"a{i}" for i in range(5)]
    assert not lock.locked


async def test_a_flooded_lane_cannot_starve_another() -> None:
    """20 intake writers queue first; the outbox, arriving last, is next but one."""
    lock, order, gate = WriteLock(), [], asyncio.Event()
    async with turn(lock, "default"):
        flood = [asyncio.create_task(hold(lock, "default", order, gate)) for _ in range(20)]
        await settle()
        outbox = asyncio.create_task(hold(lock, "outbox", order, gate))
        await settle()
    gate.set()
    await asyncio.gather(*flood, outbox)
    # Round robin after the holder's lane: the outbox waits for no queued intake write.
    assert order.index("outbox") == 0
    assert lock.turns == {"default": 21, "outbox": 1}


async def test_lanes_take_turns_while_each_has_waiters() -> None:
    lock, order, gate = WriteLock(), [], asyncio.Event()
    gate.set()
    async with turn(lock, "default"):
        tasks = [asyncio.create_task(hold(lock, lane, order, gate)) for lane in ["default"] * 3]
        tasks += [asyncio.create_task(hold(lock, lane, order, gate)) for lane in ["outbox"] * 2]
        tasks += [asyncio.create_task(hold(lock, "clock", order, gate))]
        await settle()
    await asyncio.gather(*tasks)
    assert order == ["outbox", "clock", "default", "outbox", "default", "default"]


async def test_a_cancelled_waiter_gives_its_turn_away() -> None:
    lock, order, gate = WriteLock(), [], asyncio.Event()
    gate.set()
    async with turn(lock, "default"):
        gone = asyncio.create_task(hold(lock, "outbox", order, gate))
        stays = asyncio.create_task(hold(lock, "default", order, gate))
        await settle()
        gone.cancel()
        await settle()
    await stays
    with pytest.raises(asyncio.CancelledError):
        await gone
    assert order == ["default"] and not lock.locked


async def test_a_waiter_cancelled_as_it_is_handed_the_lock_passes_it_on() -> None:
    lock, order, gate = WriteLock(), [], asyncio.Event()
    gate.set()
    await lock.acquire("default")
    handed = asyncio.create_task(hold(lock, "outbox", order, gate))
    after = asyncio.create_task(hold(lock, "default", order, gate))
    await settle()
    lock.release()  # hands the lock to `handed`...
    handed.cancel()  # ...which is cancelled before it runs
    await after
    with pytest.raises(asyncio.CancelledError):
        await handed
    assert order == ["default"] and not lock.locked


async def timers_named(db: Database, kind: str) -> int:
    async with db.read() as session:
        return int(await session.scalar(select(func.count()).where(Timer.kind == kind)) or 0)


def add_timer(session: AsyncSession, kind: str) -> None:
    timers.schedule(session, case_id="RC-250301-0001", kind=kind, due_at=datetime.now(UTC))


async def test_savepoints_stay_inside_their_transaction(db: Database) -> None:
    # A savepoint opened before any write, released, then the whole transaction rolled
    # back: without allow_savepoints the sqlite3 driver would have committed it.
    with pytest.raises(KeyError):
        async with db.transaction() as session:
            await allow_savepoints(session)
            await session.execute(select(1))
            async with session.begin_nested():
                add_timer(session, "released")
            raise KeyError("the transaction fails after the savepoint")
    assert await timers_named(db, "released") == 0

    async with db.transaction() as session:
        await allow_savepoints(session)
        async with session.begin_nested():
            add_timer(session, "kept")
        with pytest.raises(RuntimeError):
            async with session.begin_nested():
                add_timer(session, "undone")
                raise RuntimeError("this savepoint alone rolls back")
    assert (await timers_named(db, "kept"), await timers_named(db, "undone")) == (1, 0)
