"""Warehouse and risk: replies say what happened, not more; a hold says why it waits;
驳回退款 needs a reason and says what it will do before it does it."""

from __future__ import annotations

from sqlalchemy import select

from bot.events import ChatMessage, Sender
from handlers.actions import on_card_action
from handlers.commands import on_chat_message
from handlers.context import Ctx
from handlers.intake import on_return_request
from storage.db import Database
from storage.models import CardRecord, PendingReply
from tests.unit.test_flow import card_token, case_of, click, outbox, request, setup, texts_to

RISK = Sender("console", "陈风控")


async def held_case(db: Database, ctx: Ctx, n: int = 1) -> str:
    """A returned parcel the warehouse found damaged: on_hold, risk card sent."""
    waybill = f"SF22334455{n:02d}"
    parcel = request(n, 4990, kind="return_refund", return_waybill=waybill)
    case_id = (await on_return_request(parcel, ctx)).case_id or ""
    await on_chat_message(ChatMessage(f"s{n}", Sender("console", "小周"), waybill), ctx)
    await inspected(db, ctx, case_id, n, "damaged", "外壳破损")
    assert (await case_of(db, case_id)).status == "on_hold"
    return case_id


async def inspected(
    db: Database, ctx: Ctx, case_id: str, n: int, finding: str, detail: str
) -> None:
    """小周 presses the anomaly button on the scanned parcel's card, which first asks
    which part or what damage, and answers it with `detail` (that records it)."""
    token = await card_token(db, case_id, "小周", finding)
    await on_card_action(click(100 + n, "小周", token), ctx)
    assert (await case_of(db, case_id)).status == "received", "an anomaly first asks"
    await on_chat_message(ChatMessage(f"d{n}", Sender("console", "小周"), detail), ctx)


async def channel_events(db: Database) -> list[str]:
    return [m.payload["event"] for m in await outbox(db, "channel.event")]


async def risk_card_state(db: Database, case_id: str) -> str:
    async with db.read() as session:
        record = (
            await session.scalars(
                select(CardRecord).where(CardRecord.case_id == case_id, CardRecord.kind == "risk")
            )
        ).one()
        return f"{record.state}:{record.card['status']}"


async def test_a_full_refund_is_answered_plainly(db: Database) -> None:
    # "已全额退款" would claim the money went back; it has only been asked for.
    ctx = await setup(db)
    case_id = await held_case(db, ctx)
    await on_card_action(
        click(2, "陈风控", await card_token(db, case_id, "陈风控", "resolve_refund")), ctx
    )
    asked = (await texts_to(db, "陈风控"))[-1]
    assert f"您正在为 {case_id} 全额退款 ¥49.90" in asked and "请直接回复原因以确认" in asked
    assert (await case_of(db, case_id)).status == "on_hold", "the click alone moves no money"
    await on_chat_message(ChatMessage("why0", RISK, "外壳轻微划痕，不影响使用"), ctx)
    assert (await case_of(db, case_id)).status == "refund_pending"
    assert (await texts_to(db, "陈风控"))[-1] == f"已放行 {case_id}，全额退款 ¥49.90 已提交渠道"


async def test_reject_refund_clicked_says_what_it_does_and_asks_for_the_reason(
    db: Database,
) -> None:
    ctx = await setup(db)
    case_id = await held_case(db, ctx)
    before = await channel_events(db)
    await on_card_action(
        click(2, "陈风控", await card_token(db, case_id, "陈风控", "resolve_reject")), ctx
    )
    # The click alone changes nothing: it explains and asks.
    assert (await case_of(db, case_id)).status == "on_hold"
    assert await channel_events(db) == before
    assert (await risk_card_state(db, case_id)).startswith("open:")
    asked = (await texts_to(db, "陈风控"))[-1]
    assert f"您正在驳回 {case_id} 的退款" in asked and "买家不会收到 ¥49.90 的退款" in asked
    assert "已驳回" in asked and "请直接回复驳回原因" in asked and "/取消" in asked

    reason = "外包装完好但主机进水，属人为损坏"
    await on_chat_message(ChatMessage("why1", RISK, reason), ctx)
    case = await case_of(db, case_id)
    assert case.status == "rejected"
    rejected = [m for m in await outbox(db, "channel.event") if m.payload["event"] == "rejected"]
    assert [m.payload["reason"] for m in rejected] == [reason]
    assert (
        await risk_card_state(db, case_id)
    ) == f"closed:已由 陈风控 于 11-21 10:00 驳回退款：{reason}"
    assert (await texts_to(db, "陈风控"))[-1] == (
        f"已驳回 {case_id} 的退款（原因：{reason}），已通知渠道和客服"
    )
    notice = (await texts_to(db, "小美"))[-1]
    assert notice.startswith(f"【驳回通知】{case_id} 已驳回")
    assert "驳回人：陈风控（风控）" in notice and f"原因：{reason}" in notice
    assert "验货为「破损（外壳破损）」" in notice and "¥49.90" in notice


async def test_reject_refund_clicked_then_cancelled_changes_nothing(db: Database) -> None:
    ctx = await setup(db)
    case_id = await held_case(db, ctx)
    before = await channel_events(db)
    await on_card_action(
        click(2, "陈风控", await card_token(db, case_id, "陈风控", "resolve_reject")), ctx
    )
    await on_chat_message(ChatMessage("c1", RISK, "/取消"), ctx)
    assert (await texts_to(db, "陈风控"))[-1] == f"已取消对 {case_id} 的操作"
    await on_chat_message(ChatMessage("c2", RISK, "其实我想说的是别的"), ctx)
    assert (await case_of(db, case_id)).status == "on_hold"
    assert await channel_events(db) == before
    assert (await risk_card_state(db, case_id)).startswith("open:")
    assert "/帮助" in (await texts_to(db, "陈风控"))[-1]


async def test_reject_refund_as_a_command_needs_a_reason_and_the_role(db: Database) -> None:
    ctx = await setup(db)
    case_id = await held_case(db, ctx)
    before = await channel_events(db)
    await on_chat_message(ChatMessage("t1", RISK, f"/驳回退款 {case_id}"), ctx)
    assert (await texts_to(db, "陈风控"))[-1] == f"驳回退款需要填写原因：/驳回退款 {case_id} 原因"
    async with db.read() as session:
        assert await session.scalar(select(PendingReply)) is None, "a typed command asks nothing"
    await on_chat_message(
        ChatMessage("t2", Sender("console", "小美"), f"/驳回退款 {case_id} 不退"), ctx
    )
    assert "没有「" in (await texts_to(db, "小美"))[-1]
    await on_chat_message(ChatMessage("t3", RISK, "/驳回退款"), ctx)
    assert (await texts_to(db, "陈风控"))[-1] == "用法：/驳回退款 RC-… 原因"
    assert (await case_of(db, case_id)).status == "on_hold"
    assert await channel_events(db) == before

    await on_chat_message(
        ChatMessage("t4", RISK, f"/reject-refund {case_id} 配件缺失，与签收照片不符"), ctx
    )
    assert (await case_of(db, case_id)).status == "rejected"
    assert (await texts_to(db, "陈风控"))[-1].startswith(
        f"已驳回 {case_id} 的退款（原因：配件缺失"
    )
    assert (await risk_card_state(db, case_id)).startswith("closed:已由 陈风控")
    assert "配件缺失，与签收照片不符" in (await texts_to(db, "小美"))[-1]


async def test_a_held_case_says_why_and_who_must_decide(db: Database) -> None:
    ctx = await setup(db)
    case_id = await held_case(db, ctx)
    await on_chat_message(
        ChatMessage("n1", Sender("console", "小周"), f"/记录 {case_id} 外箱压扁，主机外壳开裂"),
        ctx,
    )
    await on_chat_message(ChatMessage("q1", Sender("console", "小美"), f"/查单 {case_id}"), ctx)
    answer = (await texts_to(db, "小美"))[-1]
    assert "异常挂起" in answer
    assert "挂起原因：验货「破损（外壳破损）」（小周 于 11-21 10:00），退款已暂停" in answer
    assert "备注：外箱压扁，主机外壳开裂（小周 11-21 10:00）" in answer
    assert (
        f"等待风控（陈风控）、客服组长或运营总监决定：全额退款、扣款退款"
        f"（/扣款退款 {case_id} 配件或金额 原因），或驳回退款（/驳回退款 {case_id} 原因）"
    ) in answer

    await on_chat_message(ChatMessage("r1", RISK, f"/驳回退款 {case_id} 人为损坏"), ctx)
    await on_chat_message(ChatMessage("q2", Sender("console", "小美"), f"/查单 {case_id}"), ctx)
    after = (await texts_to(db, "小美"))[-1]
    assert "已驳回" in after and "挂起原因" not in after, "only a held case waits"
