"""/统计's figures against a hand-built month, on both engines.

The fixture is small enough to count by hand: the expected numbers below are worked
out from the rows, not from the code under test. Now is Wednesday 2026-11-25 15:00 in
Shanghai (07:00 UTC); the week began on Monday the 23rd, the month on the 1st.
"""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import insert

from bot.events import ChatMessage, Sender
from handlers import reports
from handlers.commands import on_chat_message
from storage.db import Database
from storage.models import ApprovalStep, Case, DisputeEvent
from tests.unit.test_flow import setup, texts_to

ZONE = ZoneInfo("Asia/Shanghai")
NOW = datetime(2026, 11, 25, 7, 0, tzinfo=UTC).replace(tzinfo=None)  # 15:00 in Shanghai


def at(day: int, hour: int) -> datetime:
    """Naive UTC of a Shanghai wall-clock time in November 2026."""
    local = datetime(2026, 11, day, hour, tzinfo=ZONE)
    return local.astimezone(UTC).replace(tzinfo=None)


def case(n: int, created: datetime, status: str, **kw: object) -> dict[str, object]:
    row: dict[str, object] = {
        "id": f"RC-2611{n:02d}-0001", "channel": kw.pop("channel", "generic"), "shop": "s",
        "external_id": f"E{n}", "order_id": f"O{n}", "kind": "refund_only",
        "amount_fen": 10000, "status": status, "created_at": created,
        "updated_at": created, "version": 1, "attachments": [],
        "reason_code": "quality.defect", "refund_fen": None, "refunded_at": None,
    }  # fmt: skip
    row.update(kw)
    return row


CASES = [
    # Last month: counted nowhere but in pending (it is still open).
    case(1, at(1, 0) - timedelta(days=2), "pending_approval"),
    # This month, before this week.
    case(2, at(3, 10), "refunded", refund_fen=5000, refunded_at=at(3, 14)),  # 4 h
    case(3, at(10, 9), "rejected", reason_code="no_reason_7day"),
    case(4, at(20, 9), "on_hold", reason_code="logistics.damaged", channel="taobao"),
    # This week, before today.
    case(5, at(23, 9), "refunded", refund_fen=12000, refunded_at=at(24, 9)),  # 24 h
    case(6, at(24, 10), "awaiting_return", reason_code="size.too_small"),
    # Today.
    case(7, at(25, 9), "pending_approval", reason_code="size.too_small"),
    case(8, at(25, 10), "refunded", refund_fen=2990, refunded_at=at(25, 12)),  # 2 h
    case(9, at(25, 11), "requested", reason_code="size.too_small", channel="taobao"),
]
STEPS = [
    # Due this month, decided late: a breach in the month only.
    {"case_id": "RC-261102-0001", "seq": 1, "role": "cs_lead", "state": "approved",
     "due_at": at(3, 12), "decided_at": at(3, 13)},
    # Due this week, decided in time: no breach.
    {"case_id": "RC-261105-0001", "seq": 1, "role": "cs_lead", "state": "approved",
     "due_at": at(23, 13), "decided_at": at(23, 11)},
    # Due today at 13:00, still pending at 15:00: a breach today.
    {"case_id": "RC-261107-0001", "seq": 1, "role": "cs_lead", "state": "pending",
     "due_at": at(25, 13), "decided_at": None},
    # Due later today: not yet a breach.
    {"case_id": "RC-261109-0001", "seq": 1, "role": "cs_lead", "state": "pending",
     "due_at": at(25, 18), "decided_at": None},
]  # fmt: skip
DISPUTES = [
    {"case_id": "RC-261104-0001", "kind": "script", "scenario": "物流破损", "outcome": "",
     "text": "t", "actor": "system", "at": at(20, 10)},
    {"case_id": "RC-261104-0001", "kind": "outcome", "scenario": "物流破损",
     "outcome": "agreed", "text": "客户同意", "actor": "member:小美", "at": at(21, 10)},
    {"case_id": "RC-261106-0001", "kind": "script", "scenario": "缺配件", "outcome": "",
     "text": "t", "actor": "member:小美", "at": at(24, 11)},
    {"case_id": "RC-261106-0001", "kind": "outcome", "scenario": "缺配件",
     "outcome": "refused", "text": "客户拒绝", "actor": "member:小美", "at": at(24, 12)},
    {"case_id": "RC-261106-0001", "kind": "outcome", "scenario": "缺配件",
     "outcome": "escalated", "text": "平台介入", "actor": "member:小美", "at": at(25, 9)},
]  # fmt: skip


async def seeded(db: Database) -> None:
    async with db.engine.begin() as conn:
        await conn.execute(insert(Case), CASES)
        await conn.execute(insert(ApprovalStep), STEPS)
        await conn.execute(insert(DisputeEvent), DISPUTES)


def test_periods_start_at_local_midnight() -> None:
    assert reports.period("today", NOW, ZONE).start == at(25, 0)
    assert reports.period("week", NOW, ZONE).start == at(23, 0)
    assert reports.period("month", NOW, ZONE).start == at(1, 0)
    assert at(1, 0).isoformat() == "2026-10-31T16:00:00"
    assert reports.period("today", NOW, ZONE).end == NOW


async def test_the_month_by_hand(db: Database) -> None:
    await seeded(db)
    month = reports.period("month", NOW, ZONE)
    async with db.read() as session:
        k = await reports.kpis(session, month, NOW)
    assert k.new == 8
    assert k.pending == {
        "pending_approval": 2, "on_hold": 1, "awaiting_return": 1, "requested": 1
    }  # fmt: skip
    assert (k.refunds.count, k.refunds.amount_fen) == (3, 5000 + 12000 + 2990)
    assert k.refunds.avg_hours is not None and abs(k.refunds.avg_hours - 10.0) < 1e-6
    assert k.sla_breaches == 2
    assert k.reasons == [("quality.defect", 3), ("size.too_small", 3),
                         ("logistics.damaged", 1), ("no_reason_7day", 1)]  # fmt: skip
    assert k.disputes == [("物流破损", "agreed", 1), ("缺配件", "escalated", 1),
                          ("缺配件", "refused", 1)]  # fmt: skip
    assert k.scripts == [("物流破损", 1), ("缺配件", 1)]


async def test_the_week_and_today_by_hand(db: Database) -> None:
    await seeded(db)
    async with db.read() as session:
        week = await reports.kpis(session, reports.period("week", NOW, ZONE), NOW)
        today = await reports.kpis(session, reports.period("today", NOW, ZONE), NOW)
    assert (week.new, week.refunds.count, week.refunds.amount_fen) == (5, 2, 14990)
    assert week.refunds.avg_hours is not None and abs(week.refunds.avg_hours - 13.0) < 1e-6
    assert week.sla_breaches == 1
    assert week.disputes == [("缺配件", "escalated", 1), ("缺配件", "refused", 1)]
    assert (today.new, today.refunds.count, today.sla_breaches) == (3, 1, 1)
    assert today.refunds.avg_hours is not None and abs(today.refunds.avg_hours - 2.0) < 1e-6
    assert today.reasons == [("size.too_small", 2), ("quality.defect", 1)]
    assert today.disputes == [("缺配件", "escalated", 1)] and today.scripts == []


async def test_a_channel_filter_applies_to_every_figure(db: Database) -> None:
    await seeded(db)
    only = reports.Filters(channel="taobao")
    async with db.read() as session:
        k = await reports.kpis(session, reports.period("month", NOW, ZONE), NOW, only)
    assert (k.new, k.pending, k.refunds.count) == (2, {"on_hold": 1, "requested": 1}, 0)
    assert k.refunds.avg_hours is None and k.sla_breaches == 0
    assert k.disputes == [("物流破损", "agreed", 1)] and k.scripts == [("物流破损", 1)]


async def test_stats_in_chat(db: Database) -> None:
    await seeded(db)
    ctx = dataclasses.replace(await setup(db), clock=lambda: NOW.replace(tzinfo=UTC))
    await on_chat_message(ChatMessage("st1", Sender("console", "小美"), "/统计 本周"), ctx)
    answer = (await texts_to(db, "小美"))[-1]
    assert answer.splitlines() == [
        "【统计 · 本周】",
        "新增售后：5 单",
        "处理中：5 单（待买家寄回 1，异常挂起 1，待审批 2，已申请 1）",
        "已退款：2 单，¥149.90",
        "平均处理时长：13.0 小时（申请到退款）",
        "SLA 超时：1 次",
        "退货原因 TOP：size.too_small（尺寸不符） 3，quality.defect（质量问题） 2",
        "话术调取：缺配件 1",
        "纠纷结果：缺配件·升级平台介入 1，缺配件·客户拒绝 1",
    ]
    await on_chat_message(ChatMessage("st2", Sender("console", "王组长"), "/stats"), ctx)
    assert (await texts_to(db, "王组长"))[-1].startswith("【统计 · 今天】\n新增售后：3 单")
    await on_chat_message(
        ChatMessage("st3", Sender("console", "王组长"), "/统计 month taobao"), ctx
    )
    assert (await texts_to(db, "王组长"))[-1].startswith("【统计 · 本月】（渠道 taobao）")
    await on_chat_message(ChatMessage("st4", Sender("console", "王组长"), "/统计 a b"), ctx)
    assert (await texts_to(db, "王组长"))[-1] == "用法：/统计 [今天|昨天|本周|本月] [渠道]"
