"""A case's timeline (handlers/timeline.py) from what the handlers record, on SQLite and
PostgreSQL: created, routed, SLA reminders and the escalation, who decided, the refund."""

from __future__ import annotations

from sqlalchemy import update

from bot.events import RefundResult
from handlers.context import Ctx
from handlers.intake import on_return_request
from handlers.refunds import record_result
from handlers.timeline import Entry, timeline, when
from storage.db import Database
from storage.models import OutboxMessage
from tests.support import FakeClock
from tests.unit.test_flow import request
from tests.unit.test_sla import at, say, setup, tick


async def entries(db: Database, case_id: str) -> list[Entry]:
    async with db.read() as session:
        found = await timeline(session, case_id)
    assert found is not None
    return found[1]


async def test_a_case_from_request_to_refund_in_order(db: Database) -> None:
    clock = FakeClock(at(11, 23, 10, 0))  # Monday 10:00; the lead's review is due 14:00
    ctx = await setup(db, clock)
    case_id = await on_request(ctx)
    clock.set(at(11, 23, 12, 0))
    await tick(ctx)  # 50%: a reminder to both leads
    clock.set(at(11, 23, 16, 0))
    await tick(ctx)  # 100% and 150% at once: one reminder, and the escalation
    clock.set(at(11, 23, 16, 5))
    await say(ctx, 1, "王组长", f"/同意 {case_id}")
    clock.set(at(11, 23, 16, 6))
    async with db.transaction() as session:
        await record_result(session, ctx, RefundResult(case_id, True, "渠道已退款"))

    found = await entries(db, case_id)
    assert [e.label for e in found] == [
        "收到售后申请",
        "进入审批",
        "分派审批",
        "时效提醒",
        "时效升级",
        "时效提醒",
        "审批同意",
        "放行退款",
        "已退款",
    ]  # fmt: skip  (at 16:00 the escalation's audit row and the reminder share the time)
    by = {e.label: e for e in found}
    assert by["收到售后申请"].detail.startswith("¥132.00 · ")
    assert by["分派审批"].detail == "第 1 级 · 客服组长"
    assert by["进入审批"].detail == "档位「客服组长审批」：客服组长（→ 待审批）"
    first, second = (e for e in found if e.label == "时效提醒")
    assert "已用时 50%" in first.detail and first.detail.endswith("（提醒 王组长、刘组长）")
    assert "已用时 100%" in second.detail
    assert by["时效升级"].actor == "系统" and by["时效升级"].tone == "bad"
    approved = by["审批同意"]
    assert (approved.actor, approved.tone) == ("王组长", "good")
    assert approved.detail == "→ 已同意"
    assert when(ctx, approved.at) == "2026-11-23 16:05:00"  # Shanghai time
    assert by["已退款"].actor == "渠道"
    assert "（发送中）" in first.detail  # no worker ran: still on its way
    async with db.transaction() as session:  # a reminder that reached nobody is no entry
        await session.execute(
            update(OutboxMessage)
            .where(OutboxMessage.case_id == case_id, OutboxMessage.kind == "text.send")
            .values(status="dead")
        )
    assert "时效提醒" not in [e.label for e in await entries(db, case_id)]


async def test_a_refusal_then_a_rejection_with_its_reason(db: Database) -> None:
    clock = FakeClock(at(11, 23, 10, 0))
    ctx = await setup(db, clock)
    case_id = await on_request(ctx)
    await say(ctx, 1, "小美", f"/同意 {case_id}")  # a cs agent may not approve
    await say(ctx, 2, "刘组长", f"/驳回 {case_id} 商品已拆封使用")
    refused, rejected = (await entries(db, case_id))[-2:]
    assert (refused.label, refused.actor, refused.tone) == (
        "操作未执行（审批同意）",
        "小美",
        "muted",
    )
    assert (rejected.label, rejected.actor, rejected.tone) == ("审批驳回", "刘组长", "bad")
    assert rejected.detail == "商品已拆封使用（→ 已驳回）"


async def test_no_timeline_for_an_unknown_case(db: Database) -> None:
    async with db.read() as session:
        assert await timeline(session, "RC-000000-0000") is None


async def on_request(ctx: Ctx) -> str:
    """A ¥132 refund: the leads' tier."""
    result = await on_return_request(request(1, 13200), ctx)
    assert result.case_id
    return result.case_id
