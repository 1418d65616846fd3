"""The SLA clock through the handlers with a frozen clock, on SQLite and PostgreSQL:
timers armed on entering a stage, reminders at 50% and 100%, escalation at 150%,
cancelled by a decision, re-armed by a transfer, coalesced after an outage, and the
channel's own deadline."""

from __future__ import annotations

import dataclasses
import tomllib
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select

from bot.events import ChatMessage, Sender
from handlers import sla, sla_notify
from handlers.commands import on_chat_message
from handlers.context import Ctx
from handlers.intake import on_return_request
from handlers.people import sync_members
from handlers.sla_policies import parse_sla
from storage import timers
from storage.db import Database
from storage.models import CardRecord, Case, Timer
from tests.support import FakeClock
from tests.unit.test_flow import case_of, make_ctx, outbox, request, texts_to

SHANGHAI = ZoneInfo("Asia/Shanghai")
LEADS = ("王组长", "刘组长")


def at(month: int, day: int, hour: int, minute: int = 0, year: int = 2026) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=SHANGHAI).astimezone(UTC)


def naive(moment: datetime) -> datetime:
    return moment.astimezone(UTC).replace(tzinfo=None)


async def setup(db: Database, clock: FakeClock, sla_toml: str | None = None) -> Ctx:
    ctx = dataclasses.replace(make_ctx(db), clock=clock)
    if sla_toml is not None:
        config, errors = parse_sla(tomllib.loads(sla_toml))
        assert errors == []
        settings = dataclasses.replace(
            ctx.settings, sla=config.policies, calendar=config.calendar, sla_config=config
        )
        ctx = dataclasses.replace(ctx, settings=settings)
    async with db.transaction() as session:
        await sync_members(session, ctx.settings.members)
    return ctx


async def tick(ctx: Ctx) -> list[Timer]:
    """One clock tick, as bot/clock.py runs it."""
    return await timers.claim_due(
        ctx.db,
        ctx.clock(),
        100,
        lambda session, timer: sla.fire(session, ctx, timer),
        finish=lambda session: sla.finish(session, ctx),
    )


async def pending(db: Database, case_id: str) -> list[Timer]:
    async with db.read() as session:
        found = await session.scalars(
            select(Timer).where(Timer.case_id == case_id, Timer.status == "pending")
        )
        return list(found)


async def say(ctx: Ctx, n: int, user: str, text: str) -> None:
    await on_chat_message(ChatMessage(f"console:m{n}", Sender("console", user), text), ctx)


def sla_texts(texts: list[str]) -> list[str]:
    return [t for t in texts if t.startswith(("⏰", "⚠"))]


async def test_a_review_from_friday_evening_is_due_monday_noon(db: Database) -> None:
    clock = FakeClock(at(11, 27, 17, 30))  # Friday 17:30; 09:00-18:00, 4 business hours
    ctx = await setup(db, clock)
    result = await on_return_request(request(1, 13200), ctx)
    case = await case_of(db, result.case_id or "")
    assert case.sla_due_at == naive(at(11, 30, 12, 30))  # Monday 12:30
    (timer,) = await pending(db, case.id)
    assert timer.due_at == naive(at(11, 30, 10, 30))  # 50%: 0.5 h on Friday + 1.5 h Monday
    card = (await outbox(db, "card.send"))[0].payload["card"]
    assert ["处理时限", "11-30 12:30"] in [list(f) for f in card["fields"]]


async def test_a_review_on_the_eve_of_national_day_waits_for_the_holiday_to_end(
    db: Database,
) -> None:
    clock = FakeClock(at(9, 30, 17, 0))  # the eve of National Day 2026
    ctx = await setup(db, clock)
    result = await on_return_request(request(1, 120000), ctx)  # director: 8 business hours
    case = await case_of(db, result.case_id or "")
    assert case.sla_due_at == naive(at(10, 8, 16, 0))  # 1 h on 9-30, 7 h on 10-08
    (timer,) = await pending(db, case.id)
    assert timer.due_at == naive(at(10, 8, 12, 0))  # 50% = 4 h: 1 on 9-30 + 3 on 10-08
    clock.set(at(10, 9, 10, 59))  # 150% = 12 h: 1 + 9 (10-08) + 2 (10-09) = 10-09 11:00
    await tick(ctx)
    assert sla_texts(await texts_to(ctx.db, "管理员")) == []
    clock.set(at(10, 9, 11, 0))
    await tick(ctx)
    assert len(sla_texts(await texts_to(ctx.db, "管理员"))) == 1  # escalated to admin


async def test_a_long_review_counts_the_make_up_saturday(db: Database) -> None:
    toml = "[policies.long]\nbusiness_hours = 24\nremind_at = [1.0]\n"
    clock = FakeClock(at(9, 30, 17, 0))
    ctx = await setup(db, clock, toml)
    ctx = dataclasses.replace(ctx, settings=_tier_sla(ctx, "long"))
    result = await on_return_request(request(1, 13200), ctx)
    case = await case_of(db, result.case_id or "")
    # 1 h on 9-30, 9 h on 10-08 and 10-09, 5 h on Saturday 10-10 (调休: a workday)
    assert case.sla_due_at == naive(at(10, 10, 14, 0))


async def test_reminders_at_half_and_full_time_then_escalation(db: Database) -> None:
    clock = FakeClock(at(11, 23, 10, 0))  # Monday 10:00; due 14:00
    ctx = await setup(db, clock)
    result = await on_return_request(request(1, 13200), ctx)
    case_id = result.case_id or ""
    clock.set(at(11, 23, 11, 59))
    assert await tick(ctx) == []  # nothing is due before 50%
    clock.set(at(11, 23, 12, 0))
    assert len(await tick(ctx)) == 1
    for lead in LEADS:
        (text,) = sla_texts(await texts_to(ctx.db, lead))
        assert text.startswith(f"⏰ @{lead} {case_id} 首次审批（客服组长）已用时 50%")
        assert "时限 11-23 14:00，剩余 2小时" in text
    cards = [m for m in await outbox(db, "card.send") if m.destination == "console:王组长"]
    assert len(cards) == 2, "the reminder shows the approval card again"
    clock.set(at(11, 23, 14, 0))
    await tick(ctx)
    assert "已用时 100%" in sla_texts(await texts_to(ctx.db, "王组长"))[-1]
    assert sla_texts(await texts_to(ctx.db, "李总监")) == []
    clock.set(at(11, 23, 16, 0))
    await tick(ctx)
    (escalated,) = sla_texts(await texts_to(ctx.db, "李总监"))
    assert escalated.startswith(f"⚠ {case_id} 已升级给运营总监：首次审批（客服组长）已用时 150%")
    notice = [m for m in await outbox(db, "card.send") if m.destination == "console:李总监"]
    assert len(notice) == 1 and notice[0].payload["card"]["buttons"] == []
    assert (await case_of(db, case_id)).sla_breached
    (timer,) = await pending(db, case_id)
    assert timer.payload["level"] == 1 and timer.payload["role"] == "ops_director"


async def test_an_approval_in_between_cancels_every_reminder(db: Database) -> None:
    clock = FakeClock(at(11, 23, 10, 0))
    ctx = await setup(db, clock)
    result = await on_return_request(request(1, 13200, kind="return_refund"), ctx)
    case_id = result.case_id or ""
    clock.set(at(11, 23, 12, 0))
    await tick(ctx)
    clock.set(at(11, 23, 12, 30))
    await say(ctx, 1, "王组长", f"/同意 {case_id}")
    assert (await case_of(db, case_id)).status == "awaiting_return"
    (timer,) = await pending(db, case_id)
    assert timer.payload["stage"] == "awaiting_parcel"  # the next stage's clock (7 days)
    for hour in (14, 16, 18):
        clock.set(at(11, 23, hour))
        assert await tick(ctx) == []
    assert len(sla_texts(await texts_to(ctx.db, "王组长"))) == 1  # only the 50% one
    assert sla_texts(await texts_to(ctx.db, "李总监")) == []
    case = await case_of(db, case_id)
    assert not case.sla_breached


async def test_an_outage_fires_what_fell_due_once_in_one_message(db: Database) -> None:
    toml = """
    [policies.quick]
    minutes = 60
    remind_at = [0.25, 0.5, 0.75]
    escalate_at = 1.5
    escalate_to = "ops_director"
    [stages]
    first_review = "quick"
    """
    clock = FakeClock(at(11, 23, 10, 0))
    ctx = await setup(db, clock, toml)
    ctx = dataclasses.replace(ctx, settings=_tier_sla(ctx, "quick"))
    result = await on_return_request(request(1, 13200), ctx)
    clock.set(at(11, 23, 11, 5))  # down from 10:00 to 11:05
    await tick(ctx)
    (text,) = sla_texts(await texts_to(ctx.db, "王组长"))
    assert "已用时 75%" in text and "停机期间错过 3 次提醒" in text
    assert "已超时 5分" in text
    assert await tick(ctx) == []  # nothing more until 150%
    (timer,) = await pending(db, result.case_id or "")
    assert timer.due_at == naive(at(11, 23, 11, 30))


def _tier_sla(ctx: Ctx, name: str):  # type: ignore[no-untyped-def]
    """Settings whose routing tiers all name policy `name`."""
    rules = ctx.settings.routing
    tiers = tuple(dataclasses.replace(t, sla=name if t.sla else "") for t in rules.tiers)
    routing = dataclasses.replace(rules, tiers=tiers, fallback_sla=name)
    return dataclasses.replace(ctx.settings, routing=routing)


async def test_reminders_for_one_member_in_one_tick_are_one_digest(db: Database) -> None:
    clock = FakeClock(at(11, 23, 10, 0))
    ctx = await setup(db, clock)
    first = await on_return_request(request(1, 13200), ctx)
    second = await on_return_request(request(2, 15000, buyer_ref="buyer-2"), ctx)
    clock.set(at(11, 23, 12, 0))
    assert len(await tick(ctx)) == 2
    (digest,) = sla_texts(await texts_to(ctx.db, "王组长"))
    assert digest.startswith("⏰ @王组长 您有 2 个售后单待处理：")
    assert first.case_id in digest and second.case_id in digest


async def test_a_transfer_rearms_and_a_member_who_left_is_replaced(db: Database) -> None:
    clock = FakeClock(at(11, 23, 10, 0))
    ctx = await setup(db, clock)
    result = await on_return_request(request(1, 13200), ctx)
    case_id = result.case_id or ""
    clock.set(at(11, 23, 11, 0))
    await say(ctx, 1, "王组长", f"/转交 {case_id} @刘组长")
    (timer,) = await pending(db, case_id)
    assert timer.payload["assignee"] is not None
    assert timer.due_at == naive(at(11, 23, 12, 0)), "the clock keeps running"
    clock.set(at(11, 23, 12, 0))
    await tick(ctx)
    assert sla_texts(await texts_to(ctx.db, "王组长")) == []
    assert len(sla_texts(await texts_to(ctx.db, "刘组长"))) == 1
    members = tuple(m for m in ctx.settings.members if m.name != "刘组长")
    async with db.transaction() as session:
        await sync_members(session, members)
    clock.set(at(11, 23, 14, 0))
    await tick(ctx)
    assert "已用时 100%" in sla_texts(await texts_to(ctx.db, "王组长"))[-1]
    (alert,) = sla_texts(await texts_to(ctx.db, "管理员"))
    assert "处理人 刘组长 已不在成员名单中" in alert and "王组长" in alert


async def test_the_channel_deadline_caps_the_due_time_and_escalates(db: Database) -> None:
    clock = FakeClock(at(11, 23, 10, 0))
    ctx = await setup(db, clock)
    deadline = at(11, 23, 13, 0)
    result = await on_return_request(request(1, 13200, deadline_at=deadline), ctx)
    case = await case_of(db, result.case_id or "")
    assert case.channel_deadline_at == naive(deadline)
    assert case.sla_due_at == naive(at(11, 23, 11, 0)), "two hours before the platform"
    card = (await outbox(db, "card.send"))[0].payload["card"]
    assert ["平台时限", "平台将于 11-23 13:00 自动同意"] in [list(f) for f in card["fields"]]
    clock.set(at(11, 23, 11, 0))
    await tick(ctx)
    (escalated,) = sla_texts(await texts_to(ctx.db, "李总监"))
    assert "平台将于 11-23 13:00 自动同意" in escalated
    async with db.read() as session:
        lines = sla.due_lines(ctx, await _with_steps(session, case.id))
    assert lines[0].startswith("时效：首次审批 时限 11-23 11:00，已超时")
    assert lines[1] == "平台将于 11-23 13:00 自动同意"


async def _with_steps(session, case_id: str) -> Case:  # type: ignore[no-untyped-def]
    from sqlalchemy.orm import selectinload

    found = await session.scalars(
        select(Case).where(Case.id == case_id).options(selectinload(Case.steps))
    )
    return found.one()


async def test_leaving_the_stage_closes_the_escalation_copies(db: Database) -> None:
    clock = FakeClock(at(11, 23, 10, 0))
    ctx = await setup(db, clock)
    result = await on_return_request(request(1, 13200, kind="return_refund"), ctx)
    case_id = result.case_id or ""
    clock.set(at(11, 23, 16, 0))
    await tick(ctx)
    await say(ctx, 1, "王组长", f"/同意 {case_id}")
    async with db.read() as session:
        copies = list(await session.scalars(select(CardRecord).where(CardRecord.kind == "sla")))
    assert copies and all(c.state == "closed" for c in copies)


async def test_a_case_without_a_policy_for_its_stage_has_no_timer(db: Database) -> None:
    clock = FakeClock(at(11, 23, 10, 0))
    ctx = await setup(db, clock, "[policies.x]\nhours = 1\n")
    ctx = dataclasses.replace(ctx, settings=_tier_sla(ctx, "missing"))
    result = await on_return_request(request(1, 13200), ctx)
    assert await pending(db, result.case_id or "") == []
    clock.advance(timedelta(days=3).total_seconds())
    assert await tick(ctx) == []
    assert (await case_of(db, result.case_id or "")).sla_due_at is None


async def test_the_case_summary_shows_the_due_time_and_what_is_left(db: Database) -> None:
    clock = FakeClock(at(11, 27, 17, 30))  # Friday 17:30: due Monday 12:30
    ctx = await setup(db, clock)
    result = await on_return_request(request(1, 13200, deadline_at=at(12, 3, 18, 0)), ctx)
    clock.set(at(11, 30, 9, 0))  # Monday 09:00: 3.5 business hours left
    await say(ctx, 1, "小美", f"/查单 {result.case_id}")
    summary = (await texts_to(ctx.db, "小美"))[-1]
    assert "时效：首次审批 时限 11-30 12:30，剩余 3小时30分" in summary
    assert "平台将于 12-03 18:00 自动同意" in summary


async def test_a_later_event_moving_the_deadline_rearms_the_clock(db: Database) -> None:
    clock = FakeClock(at(11, 23, 10, 0))
    ctx = await setup(db, clock)
    result = await on_return_request(request(1, 13200), ctx)
    case_id = result.case_id or ""
    assert (await case_of(db, case_id)).sla_due_at == naive(at(11, 23, 14, 0))
    moved = request(1, 13200, key="generic:main-store:evt-1b", version="2")
    await on_return_request(dataclasses.replace(moved, deadline_at=at(11, 23, 12, 30)), ctx)
    case = await case_of(db, case_id)
    assert case.sla_due_at == naive(at(11, 23, 10, 30))
    (timer,) = await pending(db, case_id)
    assert timer.due_at == naive(at(11, 23, 10, 30))  # the deadline margin comes first now
    clock.set(at(11, 23, 10, 30))
    await tick(ctx)
    assert "平台将于 11-23 12:30 自动同意" in sla_texts(await texts_to(ctx.db, "李总监"))[0]


async def test_a_firing_that_fails_sends_nothing_and_is_retried_once(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = FakeClock(at(11, 23, 10, 0))
    ctx = await setup(db, clock)
    result = await on_return_request(request(1, 13200), ctx)
    case_id = result.case_id or ""
    real = sla_notify.escalate

    async def down(*args: object, **kwargs: object) -> None:
        raise RuntimeError("escalation target unreachable")

    monkeypatch.setattr(sla_notify, "escalate", down)
    clock.set(at(11, 23, 16, 0))  # 50%, 100% and 150% all due at once
    assert await tick(ctx) == []
    assert sla_texts(await texts_to(ctx.db, "王组长")) == []  # its reminder rolled back too
    (timer,) = await pending(db, case_id)
    assert timer.due_at == naive(at(11, 23, 16, 1))  # retried a minute later, not at once
    monkeypatch.setattr(sla_notify, "escalate", real)
    clock.set(at(11, 23, 16, 1))
    assert len(await tick(ctx)) == 1
    (reminder,) = sla_texts(await texts_to(ctx.db, "王组长"))
    assert "停机期间错过 2 次提醒" in reminder
    assert len(sla_texts(await texts_to(ctx.db, "李总监"))) == 1
