"""The abuse flag: 3 anomalies of one kind in 180 days flag the buyer at the third; a
flagged buyer is never auto-approved and every card about them says so; risk clears
the flag with a reason, audited, and only later incidents count after that."""

from __future__ import annotations

import dataclasses
from datetime import timedelta

from sqlalchemy import select

from bot.events import ChatMessage, Item, Sender
from bot.platforms.wecom_cards import MAX_BUTTONS
from handlers import abuse
from handlers.actions import on_card_action
from handlers.commands import on_chat_message
from handlers.context import Ctx
from handlers.intake import on_return_request
from handlers.people import member_named
from storage.db import Database
from storage.models import AuditEvent, CardRecord, Customer
from tests.unit.test_flow import NOW, case_of, click, setup, texts_to
from tests.unit.test_flow import request as base_request
from tests.unit.test_resolve import card_token

WAREHOUSE = Sender("console", "小周")
RISK = Sender("console", "陈风控")


def at(ctx: Ctx, days: float) -> Ctx:
    """`ctx` with its clock `days` after NOW."""
    return dataclasses.replace(ctx, clock=lambda: NOW + timedelta(days=days))


async def incident(db: Database, ctx: Ctx, n: int, outcome: str, detail: str) -> str:
    waybill = f"SF7700000{n:03d}"
    item = Item("FEEDER-2", "自动喂食器", 1, 3900)
    parcel = base_request(n, 3900, kind="return_refund", return_waybill=waybill, items=(item,))
    case_id = (await on_return_request(parcel, ctx)).case_id or ""
    await on_chat_message(ChatMessage(f"s{n}", WAREHOUSE, waybill), ctx)
    await on_card_action(
        click(100 + n, "小周", await card_token(db, case_id, "小周", outcome)), ctx
    )
    await on_chat_message(ChatMessage(f"d{n}", WAREHOUSE, detail), ctx)
    assert (await case_of(db, case_id)).status == "on_hold"
    return case_id


async def customer(db: Database) -> Customer:
    async with db.read() as session:
        return (await session.scalars(select(Customer))).one()


async def flag_rows(db: Database) -> list[AuditEvent]:
    async with db.read() as session:
        query = select(AuditEvent).where(
            AuditEvent.action.in_(("flag_customer", "unflag_customer"))
        )
        return list(await session.scalars(query.order_by(AuditEvent.id)))


async def test_the_third_of_one_kind_flags_and_only_inside_the_window(db: Database) -> None:
    ctx = await setup(db)
    await incident(db, ctx, 1, "missing_parts", "滤网")  # 200 days before the others
    later = at(ctx, 200)
    await incident(db, later, 2, "missing_parts", "食盆")
    await incident(db, later, 3, "damaged", "外壳破损")  # another kind: counted apart
    await incident(db, at(ctx, 250), 4, "missing_parts", "滤网")
    assert not (await customer(db)).flagged, "two in the window; the first has aged out"
    third = await incident(db, at(ctx, 300), 5, "missing_parts", "电源适配器")
    buyer = await customer(db)
    assert buyer.flagged and buyer.flag_reason == "潜在滥用权益：180 天内缺配件 3 次"
    [flag] = await flag_rows(db)
    assert flag.case_id == third and "RC-" in flag.detail


async def test_a_flagged_buyer_is_never_auto_approved_and_cards_say_so(db: Database) -> None:
    ctx = await setup(db)
    for n in (1, 2, 3):
        await incident(db, ctx, n, "empty", "空箱")
    small = (await on_return_request(base_request(10, 1990), ctx)).case_id or ""
    assert (await case_of(db, small)).status == "pending_approval"
    middle = (await on_return_request(base_request(11, 13200), ctx)).case_id or ""
    async with db.read() as session:
        cards = list(
            await session.scalars(
                select(CardRecord).where(CardRecord.case_id.in_((small, middle)))
            )
        )
    assert cards and all(any("潜在滥用权益" in h for h in c.card["history"]) for c in cards)
    # The warehouse's inspection card of the buyer's next parcel says so too.
    parcel = base_request(12, 3900, kind="return_refund", return_waybill="SF7799999999")
    case_id = (await on_return_request(parcel, ctx)).case_id or ""
    assert (await case_of(db, case_id)).status == "pending_approval", "no auto tier for them"
    await on_chat_message(ChatMessage("a1", Sender("console", "王组长"), f"/同意 {case_id}"), ctx)
    await on_chat_message(ChatMessage("a2", WAREHOUSE, "SF7799999999"), ctx)
    async with db.read() as session:
        card = (
            await session.scalars(
                select(CardRecord).where(
                    CardRecord.case_id == case_id, CardRecord.kind == "inspection"
                )
            )
        ).one()
    assert any("潜在滥用权益" in h for h in card.card["history"])


async def test_risk_clears_the_flag_with_a_reason_and_counting_restarts(db: Database) -> None:
    ctx = await setup(db)
    cases = [await incident(db, ctx, n, "wrong_item", "收到旧款") for n in (1, 2, 3)]
    assert (await customer(db)).flagged
    async with db.read() as session:
        risk = await session.scalar(
            select(CardRecord).where(CardRecord.case_id == cases[-1], CardRecord.kind == "risk")
        )
    assert risk is not None
    shown = [b["label"] for b in risk.card["buttons"]][:MAX_BUTTONS]  # what WeCom shows
    assert shown == ["全额退款", "扣款退款", "驳回退款", "解除标记", "客户同意", "客户拒绝"]
    unflag = await card_token(db, cases[-1], "陈风控", "unflag")
    await on_card_action(click(1, "小周", unflag), ctx)  # not risk
    assert "没有「风控」角色" in (await texts_to(db, "小周"))[-1]
    await on_card_action(click(2, "陈风控", unflag), ctx)
    assert "请直接回复解除买家" in (await texts_to(db, "陈风控"))[-1]
    assert (await customer(db)).flagged, "the click alone clears nothing"
    await on_chat_message(ChatMessage("u1", RISK, "已与买家核实，仓库发错批次"), ctx)
    buyer = await customer(db)
    assert (buyer.flagged, buyer.flag_reason) == (False, "")
    assert buyer.flag_cleared_at is not None
    flag, cleared = await flag_rows(db)
    assert cleared.actor == "member:陈风控" and "已与买家核实" in cleared.detail
    assert "潜在滥用权益" in cleared.detail, "the audit keeps what was cleared"
    small = (await on_return_request(base_request(9, 1990), at(ctx, 1))).case_id or ""
    assert (await case_of(db, small)).status == "refund_pending", "auto-approved again"
    await incident(db, at(ctx, 2), 4, "wrong_item", "收到旧款")
    assert not (await customer(db)).flagged, "only incidents after the clearing count"


async def test_clearing_needs_a_flag_and_a_reason(db: Database) -> None:
    ctx = await setup(db)
    case_id = await incident(db, ctx, 1, "damaged", "外壳破损")
    async with db.transaction() as session:
        risk = await member_named(session, "陈风控")
        assert risk is not None
        assert await abuse.clear_flag(session, ctx, case_id, risk, "理由", RISK) is not None
    assert "没有风险标记" in (await texts_to(db, "陈风控"))[-1]
    for n in (2, 3):
        await incident(db, ctx, n, "damaged", "外壳破损")
    async with db.transaction() as session:
        risk = await member_named(session, "陈风控")
        assert risk is not None
        assert await abuse.clear_flag(session, ctx, case_id, risk, "  ", RISK) is not None
    assert "需要填写原因" in (await texts_to(db, "陈风控"))[-1]
    assert (await customer(db)).flagged
