"""The workflow end to end through the handlers, on SQLite and PostgreSQL.

No HTTP here: events go straight to the handlers, and the outbox rows they
write are what we check (delivery has its own tests).
"""

from __future__ import annotations

import asyncio
import dataclasses
from datetime import UTC, datetime

from sqlalchemy import func, select

from bot.events import CardAction, ChatMessage, Item, ReturnRequest, Sender
from bot.settings import ConsoleSettings, MemberConfig, config_dir, load
from handlers.actions import on_card_action
from handlers.commands import on_chat_message
from handlers.context import Ctx
from handlers.intake import on_return_request
from handlers.people import sync_members
from storage.db import Database
from storage.models import (
    ApprovalStep,
    AuditEvent,
    CardRecord,
    Case,
    Member,
    OutboxMessage,
)
from storage.secrets import Keyring

NOW = datetime(2026, 11, 21, 2, 0, tzinfo=UTC)


def make_ctx(db: Database) -> Ctx:
    base = load(config_dir() / "returnhub.example.toml", env={})
    members = (*base.members, MemberConfig(name="刘组长", roles=("cs_lead",)))
    settings = dataclasses.replace(
        base,
        console=ConsoleSettings(enabled=True),
        members=members,
    )
    keys = Keyring("s3cret")
    return Ctx(db=db, settings=settings, clock=lambda: NOW, platforms=("console",), keyring=keys)


async def setup(db: Database) -> Ctx:
    ctx = make_ctx(db)
    async with db.transaction() as session:
        await sync_members(session, ctx.settings.members)
    return ctx


def request(n: int, amount_fen: int, kind: str = "refund_only", **kw: object) -> ReturnRequest:
    fields: dict[str, object] = dict(
        key=f"generic:main-store:evt-{n}",
        channel="generic",
        shop="main-store",
        external_id=f"AS{n}",
        order_id=f"SO{n}",
        kind=kind,
        status="requested",
        amount_fen=amount_fen,
        version="1",
        occurred_at=NOW,
        buyer_ref="buyer-1",
        buyer_nick="喵星人",
        reason_code="quality.defect",
        items=(Item("FEEDER-2", "自动喂食器", 1, amount_fen),),
    )
    fields.update(kw)
    return ReturnRequest(**fields)  # type: ignore[arg-type]


async def case_of(db: Database, case_id: str) -> Case:
    async with db.read() as session:
        found = await session.get(Case, case_id)
        assert found is not None
        return found


async def outbox(db: Database, kind: str) -> list[OutboxMessage]:
    async with db.read() as session:
        rows = await session.scalars(
            select(OutboxMessage).where(OutboxMessage.kind == kind).order_by(OutboxMessage.id)
        )
        return list(rows)


async def texts_to(db: Database, user: str) -> list[str]:
    """The chat texts the console member `user` was sent, in order."""
    return [
        m.payload["text"]
        for m in await outbox(db, "text.send")
        if m.destination == f"console:{user}"
    ]


async def card_token(db: Database, case_id: str, user: str, action: str) -> str:
    async with db.read() as session:
        record = (
            await session.scalars(
                select(CardRecord)
                .where(CardRecord.case_id == case_id, CardRecord.recipient == user)
                .order_by(CardRecord.id.desc())
            )
        ).first()
        assert record is not None, f"no card for {user}"
        return next(b["token"] for b in record.card["buttons"] if b["action"] == action)


def click(n: int, user: str, token: str, **kw: str) -> CardAction:
    return CardAction(key=f"console:click:{n}", sender=Sender("console", user), token=token, **kw)


async def test_small_refund_is_auto_approved_and_released(db: Database) -> None:
    ctx = await setup(db)
    result = await on_return_request(request(1, 2990), ctx)
    case = await case_of(db, result.case_id or "")
    assert (case.status, case.tier, case.refund_fen) == ("refund_pending", "auto", 2990)
    events = [m.payload["event"] for m in await outbox(db, "channel.event")]
    refunds = await outbox(db, "channel.refund")
    assert events == ["approved"] and refunds[0].payload["amount"] == "29.90"
    assert not await outbox(db, "card.send"), "nobody needs to approve"


async def test_duplicate_and_stale_versions_do_nothing(db: Database) -> None:
    ctx = await setup(db)
    first = await on_return_request(request(2, 13200), ctx)
    again = await on_return_request(request(2, 13200), ctx)
    same_version = await on_return_request(request(2, 13200, key="generic:x:other"), ctx)
    assert (again.case_id, again.duplicate) == (first.case_id, True)
    assert (same_version.case_id, same_version.duplicate) == (first.case_id, True)
    async with db.read() as session:
        assert await session.scalar(select(func.count(Case.id))) == 1
    assert len(await outbox(db, "card.send")) == 2  # 王组长 and 刘组长, once each


async def test_two_step_approval_with_history_and_stale_click(db: Database) -> None:
    ctx = await setup(db)
    case_id = (await on_return_request(request(3, 600000), ctx)).case_id or ""
    cards = await outbox(db, "card.send")
    assert [c.destination for c in cards] == ["console:李总监"]
    assert cards[0].payload["card"]["history"], "director tier carries customer history"
    await on_card_action(
        click(1, "李总监", await card_token(db, case_id, "李总监", "approve")), ctx
    )
    case = await case_of(db, case_id)
    assert case.status == "pending_approval" and case.current_step == 2
    await on_card_action(
        click(2, "赵财务", await card_token(db, case_id, "赵财务", "approve")), ctx
    )
    assert (await case_of(db, case_id)).status == "refund_pending"
    # A replayed click (new key) on the first card: already decided.
    await on_card_action(
        click(3, "李总监", await card_token(db, case_id, "李总监", "approve")), ctx
    )
    texts = [m.payload["text"] for m in await outbox(db, "text.send")]
    assert texts[-1] == "已由 李总监 于 11-21 10:00 同意"
    updates = await outbox(db, "card.update")
    assert {u.payload["card"]["status"].split(" 于")[0] for u in updates} == {
        "已由 李总监",
        "已由 赵财务",
    }


async def test_wrong_role_and_unknown_user_are_refused_politely(db: Database) -> None:
    ctx = await setup(db)
    case_id = (await on_return_request(request(4, 13200), ctx)).case_id or ""
    token = await card_token(db, case_id, "王组长", "approve")
    await on_card_action(click(1, "小周", token), ctx)
    await on_card_action(click(2, "stranger", token), ctx)
    await on_card_action(click(3, "王组长", token + "x"), ctx)
    assert (await case_of(db, case_id)).status == "pending_approval"
    texts = [m.payload["text"] for m in await outbox(db, "text.send")]
    assert "客服组长" in texts[0] and "成员" in texts[1] and "无效" in texts[2]
    async with db.read() as session:
        refused = await session.scalar(
            select(func.count(AuditEvent.id)).where(AuditEvent.action.like("refused:%"))
        )
    assert refused == 2


async def test_reject_needs_a_reason_and_transfer_needs_the_role(db: Database) -> None:
    ctx = await setup(db)
    case_id = (await on_return_request(request(5, 13200), ctx)).case_id or ""
    me = Sender("console", "王组长")
    await on_chat_message(ChatMessage("m1", me, f"/驳回 {case_id}"), ctx)
    await on_chat_message(ChatMessage("m2", me, f"/转交 {case_id} @小周"), ctx)
    assert (await case_of(db, case_id)).status == "pending_approval"
    await on_chat_message(ChatMessage("m3", me, f"/transfer {case_id} @刘组长"), ctx)
    # Only the new assignee may decide now.
    await on_chat_message(ChatMessage("m4", me, f"/approve {case_id}"), ctx)
    assert (await case_of(db, case_id)).status == "pending_approval"
    await on_chat_message(
        ChatMessage("m5", Sender("console", "刘组长"), f"/驳回 {case_id} 超过七天"), ctx
    )
    case = await case_of(db, case_id)
    assert case.status == "rejected"
    texts = [m.payload["text"] for m in await outbox(db, "text.send")]
    assert "原因" in texts[0] and "没有「客服组长」" in texts[1] and "转交给 刘组长" in texts[2]
    assert "转交给 刘组长" in texts[3]
    assert [m.payload["event"] for m in await outbox(db, "channel.event")] == ["rejected"]


async def test_return_scan_inspect_anomaly_then_risk_release(db: Database) -> None:
    ctx = await setup(db)
    case_id = (
        await on_return_request(
            request(6, 4990, kind="return_refund", return_waybill="SF1234567890"), ctx
        )
    ).case_id or ""
    assert (await case_of(db, case_id)).status == "awaiting_return"
    await on_chat_message(ChatMessage("s1", Sender("console", "小周"), "SF1234567890"), ctx)
    assert (await case_of(db, case_id)).status == "received"
    token = await card_token(db, case_id, "小周", "missing_parts")
    await on_card_action(click(1, "小周", token), ctx)
    assert "可选：滤网、电源适配器、食盆" in (await texts_to(db, "小周"))[-1]
    await on_chat_message(ChatMessage("p1", Sender("console", "小周"), "滤网"), ctx)
    assert (await case_of(db, case_id)).status == "on_hold"
    risk = await card_token(db, case_id, "陈风控", "resolve_refund")
    await on_card_action(click(2, "陈风控", risk, reason="买家已补寄滤网"), ctx)
    case = await case_of(db, case_id)
    assert (case.status, case.refund_fen) == ("refund_pending", 4990)
    assert [m.payload["event"] for m in await outbox(db, "channel.event")] == [
        "approved",
        "on_hold",
    ]


async def test_two_approvers_at_once_exactly_one_wins(db: Database) -> None:
    ctx = await setup(db)
    case_id = (await on_return_request(request(7, 13200), ctx)).case_id or ""
    wang = await card_token(db, case_id, "王组长", "approve")
    liu = await card_token(db, case_id, "刘组长", "reject")
    await asyncio.gather(
        on_card_action(click(1, "王组长", wang), ctx),
        on_card_action(click(2, "刘组长", liu, reason="描述不符"), ctx),
    )
    case = await case_of(db, case_id)
    assert case.status in ("refund_pending", "rejected")
    winner = "王组长" if case.status == "refund_pending" else "刘组长"
    loser = "刘组长" if winner == "王组长" else "王组长"
    texts = {m.destination: m.payload["text"] for m in await outbox(db, "text.send")}
    assert texts[f"console:{loser}"].startswith(f"已由 {winner} 于")
    async with db.read() as session:
        decided = await session.scalar(
            select(func.count(AuditEvent.id)).where(
                AuditEvent.case_id == case_id, AuditEvent.action.in_(["approve", "reject"])
            )
        )
        members = await session.scalar(select(func.count(Member.id)))
    assert decided == 1 and members


async def test_reject_clicked_on_a_card_asks_for_the_reason_in_chat(db: Database) -> None:
    ctx = await setup(db)
    case_id = (await on_return_request(request(8, 13200), ctx)).case_id or ""
    token = await card_token(db, case_id, "王组长", "reject")
    await on_card_action(click(1, "王组长", token), ctx)
    assert (await case_of(db, case_id)).status == "pending_approval"
    await on_chat_message(
        ChatMessage("r1", Sender("console", "王组长"), "商品已使用，不符合退货条件"), ctx
    )
    case = await case_of(db, case_id)
    assert case.status == "rejected"
    texts = await texts_to(db, "王组长")
    assert "请直接回复驳回" in texts[0] and texts[1] == f"已驳回 {case_id}"
    # The next plain message is no longer taken as a reason.
    await on_chat_message(ChatMessage("r2", Sender("console", "王组长"), "你好"), ctx)
    assert "帮助" in [m.payload["text"] for m in await outbox(db, "text.send")][-1]


async def test_channel_refunded_reports_and_early_cancels(db: Database) -> None:
    ctx = await setup(db)
    unknown = await on_return_request(request(9, 2990, status="refunded"), ctx)
    assert unknown.case_id is None
    early = await on_return_request(request(10, 13200, status="cancelled", version="2"), ctx)
    late = await on_return_request(request(10, 13200, key="generic:late", version="1"), ctx)
    assert (await case_of(db, early.case_id or "")).status == "closed"
    assert (late.case_id, late.duplicate) == (early.case_id, True)
    assert not await outbox(db, "card.send"), "a cancelled request asks nobody to approve"
    paid = (await on_return_request(request(11, 2990), ctx)).case_id or ""
    await on_return_request(
        request(11, 2990, key="generic:paid", status="refunded", version="2"), ctx
    )
    assert (await case_of(db, paid)).status == "refunded"


async def test_the_agent_who_keyed_a_case_in_cannot_approve_it(db: Database) -> None:
    ctx = await setup(db)
    case_id = (await on_return_request(request(12, 13200, operator="王组长"), ctx)).case_id
    await on_chat_message(ChatMessage("o1", Sender("console", "王组长"), f"/同意 {case_id}"), ctx)
    assert (await case_of(db, case_id or "")).status == "pending_approval"
    assert "自己" in [m.payload["text"] for m in await outbox(db, "text.send")][-1]
    await on_chat_message(ChatMessage("o2", Sender("console", "刘组长"), f"/同意 {case_id}"), ctx)
    assert (await case_of(db, case_id or "")).status == "refund_pending"


async def test_transfer_clicked_on_a_card_offers_the_role_holders(db: Database) -> None:
    ctx = await setup(db)
    case_id = (await on_return_request(request(14, 13200), ctx)).case_id or ""
    await on_card_action(
        click(1, "王组长", await card_token(db, case_id, "王组长", "transfer")), ctx
    )
    asked = [m.payload["text"] for m in await outbox(db, "text.send")][-1]
    assert asked.startswith("可转交给：刘组长。")
    await on_chat_message(ChatMessage("t1", Sender("console", "王组长"), "刘组长"), ctx)
    async with db.read() as session:
        step = (
            await session.scalars(select(ApprovalStep).where(ApprovalStep.case_id == case_id))
        ).one()
        assert step.assignee_id is not None
    assert [m.payload["text"] for m in await outbox(db, "text.send")][-1] == (
        f"已将 {case_id} 转交给 刘组长"
    )
