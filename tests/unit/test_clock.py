"""The clock really drives the outbox worker (woken by kicks) and the timers, and stops
cleanly."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

import pytest
from sqlalchemy.ext.asyncio import AsyncSession

from bot.clock import TIMER_JOB_ID, Clock
from bot.outbox import OutboxWorker, RetryableError
from bot.settings import OutboxSettings
from storage import outbox, outbox_dead, timers
from storage.db import Database
from storage.models import OutboxMessage, Timer


def utcnow() -> datetime:
    return datetime.now(UTC)


async def eventually(check: Callable[[], bool], seconds: float = 5.0) -> None:
    """Poll until `check()` holds, failing after `seconds` (no fixed sleeps)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while not check():
        assert loop.time() < deadline, "condition not reached in time"
        await asyncio.sleep(0.01)


async def enqueue(db: Database, n: int = 1) -> list[int]:
    async with db.transaction() as session:
        msgs = [
            outbox.enqueue(
                session, kind="text", destination="console:u1", payload={}, now=utcnow()
            )
            for _ in range(n)
        ]
    return [m.id for m in msgs]


def recorder(sent: list[int]) -> Callable[[OutboxMessage], Awaitable[None]]:
    async def perform(msg: OutboxMessage) -> None:
        sent.append(msg.id)

    return perform


async def test_ticks_deliver_outbox_rows_and_fire_timers(db: Database) -> None:
    sent: list[int] = []
    fired: list[int] = []

    async def hook(session: AsyncSession, timer: Timer) -> None:
        fired.append(timer.id)

    settings = OutboxSettings(tick_seconds=0.05)
    worker = OutboxWorker(db, settings, {"text": recorder(sent)})
    clock = Clock(worker, hook, db, settings)
    await clock.start()
    try:
        scheduler = clock._scheduler
        assert scheduler is not None
        job = scheduler.get_job(TIMER_JOB_ID)
        assert job is not None and job.max_instances == 1 and job.coalesce
        assert [j.id for j in scheduler.get_jobs()] == [TIMER_JOB_ID]  # the outbox is a task
        ids = await enqueue(db, 3)
        async with db.transaction() as session:
            timer = timers.schedule(
                session, case_id="RC-250301-0001", kind="remind", due_at=utcnow()
            )
        await eventually(lambda: sorted(sent) == ids and fired == [timer.id])
    finally:
        await clock.stop()
    assert not clock.running
    assert sorted(sent) == ids  # each once


async def test_stop_waits_for_the_tick_in_flight(db: Database) -> None:
    entered, release = asyncio.Event(), asyncio.Event()
    sent: list[int] = []

    async def slow(msg: OutboxMessage) -> None:
        entered.set()
        await release.wait()
        sent.append(msg.id)

    settings = OutboxSettings(tick_seconds=0.05)
    clock = Clock(OutboxWorker(db, settings, {"text": slow}), None, db, settings)
    await clock.start()
    ids = await enqueue(db)
    await asyncio.wait_for(entered.wait(), 5)
    stopping = asyncio.create_task(clock.stop())
    await asyncio.sleep(0.1)
    assert not stopping.done(), "stop() must not cancel a delivery in flight"
    release.set()
    await asyncio.wait_for(stopping, 5)
    assert sent == ids
    async with db.read() as session:
        assert await outbox_dead.depth(session) == {"pending": 0, "dead": 0}


async def test_stop_flushes_what_is_due_and_is_idempotent(db: Database) -> None:
    sent: list[int] = []
    settings = OutboxSettings(tick_seconds=3600)  # never ticks during the test
    clock = Clock(OutboxWorker(db, settings, {"text": recorder(sent)}), None, db, settings)
    await clock.start()
    await clock.start()  # a second start is a no-op, not a second scheduler
    ids = await enqueue(db, 2)
    await clock.stop()
    await clock.stop()
    assert sorted(sent) == ids


async def test_a_failing_tick_is_logged_and_the_clock_keeps_going(db: Database) -> None:
    calls = 0

    class Flaky(OutboxWorker):
        async def run_once(self) -> int:
            nonlocal calls
            calls += 1
            if calls == 1:
                raise ConnectionError("database restarting")
            return await super().run_once()

    sent: list[int] = []
    settings = OutboxSettings(tick_seconds=0.05)
    clock = Clock(Flaky(db, settings, {"text": recorder(sent)}), None, db, settings)
    ids = await enqueue(db)
    await clock.start()
    try:
        await eventually(lambda: sent == ids)
    finally:
        await clock.stop()
    assert calls >= 2


async def test_kick_runs_the_outbox_tick_without_waiting_for_the_interval(db: Database) -> None:
    delivered: list[int] = []

    async def perform(msg: OutboxMessage) -> None:
        delivered.append(msg.id)

    worker = OutboxWorker(db, OutboxSettings(tick_seconds=3600), {"k": perform})
    clock = Clock(worker, None, db, OutboxSettings(tick_seconds=3600))
    await clock.start()
    try:
        async with db.transaction() as session:
            outbox.enqueue(session, kind="k", destination="d", payload={}, now=datetime.now(UTC))
        clock.kick()
        for _ in range(200):
            if delivered:
                break
            await asyncio.sleep(0.01)
        assert len(delivered) == 1
    finally:
        await clock.stop()


async def test_kicks_during_a_round_coalesce_into_one_more_round(
    db: Database, caplog: pytest.LogCaptureFixture
) -> None:
    entered, release = asyncio.Event(), asyncio.Event()
    sent: list[int] = []
    rounds = 0

    async def slow(msg: OutboxMessage) -> None:
        entered.set()
        await release.wait()
        sent.append(msg.id)

    class Counting(OutboxWorker):
        async def run_once(self) -> int:
            nonlocal rounds
            rounds += 1
            return await super().run_once()

    settings = OutboxSettings(tick_seconds=3600)  # only kicks wake it
    clock = Clock(Counting(db, settings, {"text": slow}), None, db, settings)
    await clock.start()
    try:
        first = await enqueue(db)
        clock.kick()
        await asyncio.wait_for(entered.wait(), 5)
        later = await enqueue(db, 3)  # written, and kicked 500 times, while the round runs
        with caplog.at_level(logging.DEBUG):
            for _ in range(500):
                clock.kick()
            assert rounds == 1
            release.set()
            await eventually(lambda: sorted(sent) == first + later)
            await eventually(lambda: rounds == 3)  # the kicks' round, then one that finds none
    finally:
        await clock.stop()
    assert sorted(sent) == first + later  # each delivered once
    assert rounds == 3
    assert not [r for r in caplog.records if "maximum number of running" in r.getMessage()]


async def test_a_backlog_is_worked_off_without_the_gap_between_rounds(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A round that performed a whole batch found a backlog: the next starts at once
    instead of after the gap that keeps a stream of kicks from making tiny rounds."""
    import bot.clock

    monkeypatch.setattr(bot.clock, "ROUND_GAP", 2.0)  # three gaps would take 6 s
    sent: list[int] = []
    settings = OutboxSettings(tick_seconds=3600, batch=5)
    clock = Clock(OutboxWorker(db, settings, {"text": recorder(sent)}), None, db, settings)
    await clock.start()
    try:
        backlog = await enqueue(db, 17)  # three whole batches and a part
        clock.kick()
        await eventually(lambda: sorted(sent) == backlog, seconds=1.5)
        late = await enqueue(db, 2)  # after a part batch the gap holds: kicks wait for it
        clock.kick()
        await asyncio.sleep(0.2)
        assert sorted(sent) == backlog
        assert not set(late) & set(sent)
    finally:
        await clock.stop()


async def test_a_backlog_that_fails_keeps_the_gap(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A platform that refuses at once makes every row of a round fail fast: those rounds
    keep the gap, or a backlog would become back-to-back rounds of failures."""
    import bot.clock

    monkeypatch.setattr(bot.clock, "ROUND_GAP", 2.0)
    tried: list[int] = []

    async def refused(msg: OutboxMessage) -> None:
        tried.append(msg.id)
        raise RetryableError("connection refused")

    settings = OutboxSettings(tick_seconds=3600, batch=5)
    clock = Clock(OutboxWorker(db, settings, {"text": refused}), None, db, settings)
    await clock.start()
    try:
        await enqueue(db, 17)
        clock.kick()
        await eventually(lambda: len(tried) == 5)
        await asyncio.sleep(0.5)
        assert len(tried) == 5  # one round of five, then the gap
    finally:
        await clock.stop()
