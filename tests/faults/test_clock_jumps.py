"""The clock stepped by NTP, back and forward (issue 14, fault 5): no timer fires twice,
none is lost, and the tick itself keeps running.

Two clocks are involved. The one the timers are due by is the app's injected clock
(`ctx.clock`, the worker's), stepped here as a FakeClock. The one APScheduler wakes
the tick by is the wall clock it reads itself (`datetime.now`), shifted here where
APScheduler reads it.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, tzinfo
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from bot.clock import Clock
from bot.outbox import OutboxWorker
from bot.settings import OutboxSettings
from handlers import sla
from handlers.context import Ctx
from handlers.intake import on_return_request
from handlers.people import sync_members
from storage import timers
from storage.db import Database
from storage.models import Timer
from tests.support import FakeClock
from tests.unit.test_flow import make_ctx, request, texts_to

SHANGHAI = ZoneInfo("Asia/Shanghai")
LEADS = ("王组长", "刘组长")
HOUR = 3600.0


def at(day: int, hour: int, minute: int = 0) -> datetime:
    return datetime(2026, 11, day, hour, minute, tzinfo=SHANGHAI).astimezone(UTC)


async def tick(ctx: Ctx) -> list[int]:
    """One timer tick, as bot/clock.py runs it; the ids it fired."""
    fired = await timers.claim_due(
        ctx.db,
        ctx.clock(),
        100,
        lambda session, timer: sla.fire(session, ctx, timer),
        finish=lambda session: sla.finish(session, ctx),
    )
    return [t.id for t in fired]


async def sla_texts(ctx: Ctx, member: str) -> list[str]:
    return [t for t in await texts_to(ctx.db, member) if t.startswith(("⏰", "⚠"))]


async def test_steps_back_refire_nothing_and_a_step_forward_fires_each_due_point_once(
    db: Database,
) -> None:
    clock = FakeClock(at(23, 10))  # Monday 10:00; first review due 14:00
    ctx = dataclasses.replace(make_ctx(db), clock=clock)
    async with db.transaction() as session:
        await sync_members(session, ctx.settings.members)
    case_id = (await on_return_request(request(1, 13200), ctx)).case_id or ""
    fired: list[int] = []
    clock.set(at(23, 12))
    fired += await tick(ctx)  # the 50% reminder
    assert len(fired) == 1
    for lead in LEADS:
        (text,) = await sla_texts(ctx, lead)
        assert "已用时 50%" in text

    for step in (-HOUR, -HOUR, 1.5 * HOUR):  # back to 11:00, 10:00, forward to 11:30
        clock.advance(step)
        assert await tick(ctx) == []  # what fired stays fired; the next point is 14:00
    for lead in LEADS:
        assert len(await sla_texts(ctx, lead)) == 1

    clock.advance(24 * HOUR)  # a day ahead: 100% and the 150% escalation fell due
    fired += await tick(ctx)
    assert await tick(ctx) == []
    clock.advance(-HOUR)
    assert await tick(ctx) == []
    assert len(fired) == len(set(fired)) == 2  # each timer fired once
    for lead in LEADS:
        reminders = await sla_texts(ctx, lead)
        assert len(reminders) == 2 and "已用时 100%" in reminders[-1]  # one more, not two
    (escalated,) = await sla_texts(ctx, "李总监")
    assert escalated.startswith(f"⚠ {case_id} 已升级给运营总监")
    async with db.read() as session:
        rows = list(await session.scalars(select(Timer).where(Timer.case_id == case_id)))
    assert sorted(t.status for t in rows) == ["fired", "fired", "pending"]  # the next, armed


class Wall:
    """The wall clock APScheduler reads, stepped by `step(seconds)` like an NTP step."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.offset = timedelta()
        wall = self

        class Stepped(datetime):
            @classmethod
            def now(cls, tz: tzinfo | None = None) -> Stepped:
                real = datetime.now(tz) + wall.offset
                return cls.fromtimestamp(real.timestamp(), tz)

        for module in ("apscheduler.schedulers.base", "apscheduler.executors.base", "bot.clock"):
            monkeypatch.setattr(f"{module}.datetime", Stepped)

    def step(self, seconds: float) -> None:
        self.offset += timedelta(seconds=seconds)


async def eventually(check: Callable[[], bool], seconds: float = 3.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while not check():
        assert loop.time() < deadline, "condition not reached in time"
        await asyncio.sleep(0.01)


async def test_the_tick_keeps_running_when_the_wall_clock_steps_back_an_hour(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    wall = Wall(monkeypatch)
    app_clock = FakeClock()
    fired: list[int] = []

    async def hook(session: AsyncSession, timer: Timer) -> None:
        fired.append(timer.id)

    async def due_now() -> int:
        async with db.transaction() as session:
            timer = timers.schedule(session, case_id="RC-1", kind="t", due_at=app_clock())
        return timer.id

    settings = OutboxSettings(tick_seconds=0.05)
    clock = Clock(OutboxWorker(db, settings, {}, clock=app_clock), hook, db, settings)
    await clock.start()
    try:
        first = await due_now()
        await eventually(lambda: fired == [first])
        wall.step(-HOUR)
        app_clock.advance(-HOUR)
        second = await due_now()
        await eventually(lambda: fired == [first, second])  # not an hour later
        wall.step(2 * HOUR)
        app_clock.advance(2 * HOUR)
        third = await due_now()
        await eventually(lambda: fired == [first, second, third])
    finally:
        await clock.stop()
