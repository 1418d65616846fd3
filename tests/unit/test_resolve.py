"""Risk resolves a held case: a deduction from the price list or typed, confirmed on a
second card; every bad input is refused politely and changes nothing."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select

from bot.events import ChatMessage, Item, Sender
from handlers.actions import on_card_action
from handlers.commands import on_chat_message
from handlers.context import Ctx
from handlers.intake import on_return_request
from storage.db import Database
from storage.models import AuditEvent, CardRecord, Resolution
from tests.unit.test_flow import case_of, click, outbox, request, setup, texts_to

RISK = Sender("console", "陈风控")
WAREHOUSE = Sender("console", "小周")
AGENT = Sender("console", "小美")


async def card_token(db: Database, case_id: str, user: str, action: str) -> str:
    """The newest card `user` got about the case that has an `action` button."""
    async with db.read() as session:
        records = await session.scalars(
            select(CardRecord)
            .where(CardRecord.case_id == case_id, CardRecord.recipient == user)
            .order_by(CardRecord.id.desc())
        )
        for record in records:
            for b in record.card["buttons"]:
                if b["action"] == action:
                    return str(b["token"])
    raise AssertionError(f"no {action} button for {user}")


async def held(db: Database, ctx: Ctx, n: int = 1, part: str = "滤网") -> str:
    """A 49.90 feeder return whose parcel lacks `part`: on_hold, risk card sent."""
    waybill = f"SF5500000{n:03d}"
    item = Item("FEEDER-2", "自动喂食器", 1, 4990)
    parcel = request(n, 4990, kind="return_refund", return_waybill=waybill, items=(item,))
    case_id = (await on_return_request(parcel, ctx)).case_id or ""
    await on_chat_message(ChatMessage(f"s{n}", WAREHOUSE, waybill), ctx)
    token = await card_token(db, case_id, "小周", "missing_parts")
    await on_card_action(click(100 + n, "小周", token), ctx)
    await on_chat_message(ChatMessage(f"p{n}", WAREHOUSE, part), ctx)
    assert (await case_of(db, case_id)).status == "on_hold"
    return case_id


async def state(db: Database, case_id: str) -> tuple[Any, ...]:
    """What a refusal must leave alone: the case's money and status, the refund
    commands, the deductions proposed or confirmed, the confirmation cards."""
    case = await case_of(db, case_id)
    async with db.read() as session:
        proposals = list(await session.execute(select(Resolution.deduction_fen, Resolution.state)))
        confirms = await session.scalar(
            select(func.count(CardRecord.id)).where(CardRecord.kind == "confirm")
        )
    refunds = [m.payload for m in await outbox(db, "channel.refund")]
    return case.status, case.deduction_fen, case.refund_fen, refunds, proposals, confirms


async def test_a_price_list_deduction_is_confirmed_then_refunded_once(db: Database) -> None:
    ctx = await setup(db)
    case_id = await held(db, ctx)
    await on_card_action(
        click(1, "陈风控", await card_token(db, case_id, "陈风控", "resolve_deduct")), ctx
    )
    asked = (await texts_to(db, "陈风控"))[-1]
    assert "滤网 ¥35.00" in asked and "滤网 寄回时缺少滤网" in asked, "the finding's part first"
    await on_chat_message(ChatMessage("r1", RISK, "滤网 寄回时缺少滤网"), ctx)
    assert (await case_of(db, case_id)).status == "on_hold"
    assert "扣除 ¥35.00（滤网），退款 ¥14.90" in (await texts_to(db, "陈风控"))[-1]

    confirm = await card_token(db, case_id, "陈风控", "confirm")
    await on_card_action(click(2, "陈风控", confirm), ctx)
    case = await case_of(db, case_id)
    assert (case.status, case.deduction_fen, case.refund_fen) == ("refund_pending", 3500, 1490)
    refunds = [m.payload for m in await outbox(db, "channel.refund")]
    assert [(r["amount"], r["deduction"], r["refund_id"]) for r in refunds] == [
        ("14.90", "35.00", case_id)
    ]
    async with db.read() as session:
        row = (await session.scalars(select(Resolution))).one()
        moved = (
            await session.scalars(
                select(AuditEvent).where(
                    AuditEvent.case_id == case_id, AuditEvent.action == "resolve_deduct"
                )
            )
        ).one()
    assert (row.state, row.decided_by, row.part) == ("confirmed", "陈风控", "滤网")
    assert moved.actor == "member:陈风控" and "寄回时缺少滤网" in moved.detail

    before = await state(db, case_id)
    await on_card_action(click(3, "陈风控", confirm), ctx)  # double confirmation
    assert "无需重复操作" in (await texts_to(db, "陈风控"))[-1]
    assert await state(db, case_id) == before


async def test_a_typed_amount_deducts_it_and_the_command_works_too(db: Database) -> None:
    ctx = await setup(db)
    case_id = await held(db, ctx, part="说明书")
    await on_chat_message(
        ChatMessage("c1", RISK, f"/扣款退款 {case_id} ¥12.50\u3000说明书缺失"), ctx
    )
    await on_card_action(
        click(1, "陈风控", await card_token(db, case_id, "陈风控", "confirm")), ctx
    )
    case = await case_of(db, case_id)
    assert (case.deduction_fen, case.refund_fen) == (1250, 3740)


async def test_bad_deductions_are_refused_and_change_nothing(db: Database) -> None:
    ctx = await setup(db)
    case_id = await held(db, ctx)
    before = await state(db, case_id)
    refusals = {
        f"/扣款退款 {case_id} 60.00 配件全无": "不能达到或超过实付金额 ¥49.90",
        f"/扣款退款 {case_id} 49.90 配件全无": "不能达到或超过实付金额 ¥49.90",
        f"/扣款退款 {case_id} 螺丝 缺螺丝": "未知配件「螺丝」",
        f"/扣款退款 {case_id} 滤网": "需要填写原因",
        f"/扣款退款 {case_id} 0 无": "扣款金额必须大于 0",
        f"/扣款退款 {case_id} 1,000 太多": "未知配件「1,000」",
        f"/扣款退款 {case_id}": "用法：/扣款退款",
    }
    for n, (command, said) in enumerate(refusals.items()):
        await on_chat_message(ChatMessage(f"b{n}", RISK, command), ctx)
        assert said in (await texts_to(db, "陈风控"))[-1], command
    assert await state(db, case_id) == before


async def test_members_without_the_role_cannot_resolve(db: Database) -> None:
    ctx = await setup(db)
    case_id = await held(db, ctx)
    # 陈风控 proposes; neither the warehouse nor customer service may decide or confirm.
    await on_chat_message(ChatMessage("c1", RISK, f"/扣款退款 {case_id} 滤网 缺滤网"), ctx)
    before = await state(db, case_id)
    confirm = await card_token(db, case_id, "陈风控", "confirm")
    deduct = await card_token(db, case_id, "陈风控", "resolve_deduct")
    refund = await card_token(db, case_id, "陈风控", "resolve_refund")
    for n, (who, token) in enumerate(
        [("小美", confirm), ("小周", confirm), ("小美", deduct), ("小周", refund)]
    ):
        await on_card_action(click(10 + n, who, token, reason="我来处理"), ctx)
        assert "没有「" in (await texts_to(db, who))[-1]
    await on_chat_message(ChatMessage("c2", AGENT, f"/扣款退款 {case_id} 滤网 缺滤网"), ctx)
    assert "没有「" in (await texts_to(db, "小美"))[-1]
    assert await state(db, case_id) == before
    async with db.read() as session:
        refused = await session.scalar(
            select(func.count(AuditEvent.id)).where(AuditEvent.action.like("refused:%"))
        )
    assert refused == 5


async def test_a_cs_lead_may_resolve_and_a_new_proposal_replaces_the_old(db: Database) -> None:
    ctx = await setup(db)
    case_id = await held(db, ctx)
    lead = Sender("console", "王组长")
    await on_chat_message(ChatMessage("c1", RISK, f"/扣款退款 {case_id} 滤网 缺滤网"), ctx)
    old = await card_token(db, case_id, "陈风控", "confirm")
    await on_chat_message(ChatMessage("c2", lead, f"/扣款退款 {case_id} 10 外壳划痕"), ctx)
    await on_card_action(click(1, "陈风控", old), ctx)  # the replaced proposal's card
    assert (await case_of(db, case_id)).status == "on_hold"
    await on_card_action(
        click(2, "王组长", await card_token(db, case_id, "王组长", "confirm")), ctx
    )
    case = await case_of(db, case_id)
    assert (case.status, case.deduction_fen) == ("refund_pending", 1000)
    async with db.read() as session:
        states = list(await session.scalars(select(Resolution.state).order_by(Resolution.id)))
    assert states == ["discarded", "confirmed"]


async def test_discarding_the_proposal_keeps_the_case_waiting(db: Database) -> None:
    ctx = await setup(db)
    case_id = await held(db, ctx)
    await on_chat_message(ChatMessage("c1", RISK, f"/扣款退款 {case_id} 滤网 缺滤网"), ctx)
    await on_card_action(
        click(1, "陈风控", await card_token(db, case_id, "陈风控", "discard")), ctx
    )
    assert "仍在等待风控处理" in (await texts_to(db, "陈风控"))[-1]
    await on_card_action(
        click(2, "陈风控", await card_token(db, case_id, "陈风控", "confirm")), ctx
    )
    case = await case_of(db, case_id)
    assert (case.status, case.deduction_fen, case.refund_fen) == ("on_hold", 0, None)
    assert not await outbox(db, "channel.refund")
