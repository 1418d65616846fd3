"""A case the channel closes while its refund waits in the outbox: no money leaves."""

from __future__ import annotations

from sqlalchemy import select

from bot.delivery import build_worker
from bot.events import ChatMessage, Sender
from handlers.commands import on_chat_message
from handlers.intake import on_return_request
from storage.db import Database
from storage.models import ApprovalStep, OutboxMessage
from tests.unit.test_flow import case_of, outbox, request, setup


async def test_a_cancel_withdraws_the_refund_command_not_yet_sent(db: Database) -> None:
    ctx = await setup(db)
    case_id = (await on_return_request(request(1, 2990), ctx)).case_id or ""
    assert (await case_of(db, case_id)).status == "refund_pending"
    cancel = request(1, 2990, key="generic:cancel-1", status="cancelled", version="2")
    await on_return_request(cancel, ctx)
    assert (await case_of(db, case_id)).status == "closed"
    performed: list[str] = []

    async def record(msg: OutboxMessage) -> dict[str, object]:
        performed.append(msg.payload.get("event", msg.kind))
        return {"confirmed": True} if msg.kind == "channel.refund" else {}

    worker = build_worker(ctx, {"channel.event": record, "channel.refund": record})
    await worker.drain()
    assert performed == ["approved", "closed"]
    [refund] = await outbox(db, "channel.refund")
    assert refund.status == "void"
    assert (await case_of(db, case_id)).status == "closed"


async def test_a_refund_confirmed_after_the_close_is_flagged_to_finance(db: Database) -> None:
    ctx = await setup(db)
    case_id = (await on_return_request(request(2, 2990), ctx)).case_id or ""
    refund_sent = False

    async def nothing(msg: OutboxMessage) -> dict[str, object]:
        return {}

    async def slow_refund(msg: OutboxMessage) -> dict[str, object]:
        # The buyer cancels while the refund command is in flight (leased, not voidable).
        nonlocal refund_sent
        if not refund_sent:
            refund_sent = True
            cancel = request(2, 2990, key="generic:cancel-2", status="cancelled", version="2")
            await on_return_request(cancel, ctx)
        return {"confirmed": True}

    worker = build_worker(
        ctx, {"channel.event": nothing, "channel.refund": slow_refund, "text.send": nothing}
    )
    await worker.drain()
    assert (await case_of(db, case_id)).status == "closed"
    texts = [(m.destination, m.payload["text"]) for m in await outbox(db, "text.send")]
    assert texts == [("console:赵财务", f"⚠ {case_id} 已关闭，但渠道确认已退款 ¥29.90，请核对")]


async def test_a_cancel_while_pending_approval_ends_the_open_step(db: Database) -> None:
    ctx = await setup(db)
    case_id = (await on_return_request(request(3, 600000), ctx)).case_id or ""
    cancel = request(3, 600000, key="generic:cancel-3", status="cancelled", version="2")
    await on_return_request(cancel, ctx)
    async with db.read() as session:
        states = list(
            await session.scalars(
                select(ApprovalStep.state)
                .where(ApprovalStep.case_id == case_id)
                .order_by(ApprovalStep.seq)
            )
        )
    assert states == ["cancelled", "cancelled"]
    await on_chat_message(ChatMessage("c3", Sender("console", "李总监"), f"/查单 {case_id}"), ctx)
    summary = [m.payload["text"] for m in await outbox(db, "text.send")][-1]
    assert "已关闭" in summary and "待处理" not in summary and "时限" not in summary
    assert "第1步 运营总监：已取消" in summary
