"""Events racing each other on one case or one buyer, on SQLite and PostgreSQL.

Whatever the interleaving, each event is applied exactly once: a lost race is
retried on fresh data, never dropped (a WeCom click was already acknowledged).
"""

from __future__ import annotations

import asyncio

from sqlalchemy import func, select

from bot.events import ChatMessage, Sender
from handlers.actions import on_card_action
from handlers.commands import on_chat_message
from handlers.intake import on_return_request
from storage.db import Database
from storage.models import AuditEvent, Case, Customer, InboxKey
from tests.unit.test_flow import card_token, case_of, click, outbox, request, setup


async def test_two_wecom_clicks_at_once_exactly_one_wins(db: Database) -> None:
    # A WeCom click carries a fresh update handle for the clicker's own card; storing it
    # must not take a card lock before the case lock (the other click closes that card).
    ctx = await setup(db)
    case_id = (await on_return_request(request(1, 13200), ctx)).case_id or ""
    wang = await card_token(db, case_id, "王组长", "approve")
    liu = await card_token(db, case_id, "刘组长", "approve")
    await asyncio.gather(
        on_card_action(click(1, "王组长", wang, platform_ref="code-wang"), ctx),
        on_card_action(click(2, "刘组长", liu, platform_ref="code-liu"), ctx),
    )
    assert (await case_of(db, case_id)).status == "refund_pending"
    async with db.read() as session:
        decided = await session.scalar(
            select(func.count(AuditEvent.id)).where(AuditEvent.action == "approve")
        )
        keys = await session.scalar(select(func.count(InboxKey.key)))
    assert decided == 1
    assert keys == 3  # the request and both clicks: none was dropped
    texts = sorted(m.payload["text"] for m in await outbox(db, "text.send"))
    assert texts[0] == f"已同意 {case_id}" and texts[1].startswith("已由 ")


async def test_one_new_buyer_two_requests_at_once_both_open_cases(db: Database) -> None:
    ctx = await setup(db)
    results = await asyncio.gather(
        on_return_request(request(1, 13200, buyer_ref="buyer-new"), ctx),
        on_return_request(request(2, 13200, buyer_ref="buyer-new"), ctx),
    )
    assert all(r.case_id and not r.duplicate for r in results)
    async with db.read() as session:
        assert await session.scalar(select(func.count(Case.id))) == 2
        assert await session.scalar(select(func.count(Customer.id))) == 1


async def test_a_request_and_its_update_at_once_make_one_case(db: Database) -> None:
    ctx = await setup(db)
    # No buyer: the two race on the case's own key, not on the customer row.
    first = request(3, 13200, kind="return_refund", buyer_ref="")
    shipped = request(
        3,
        13200,
        kind="return_refund",
        buyer_ref="",
        key="generic:main-store:evt-3b",
        status="buyer_shipped",
        version="2",
        return_waybill="SF100200300",
        carrier="顺丰",
    )
    results = await asyncio.gather(on_return_request(first, ctx), on_return_request(shipped, ctx))
    assert results[0].case_id == results[1].case_id
    case = await case_of(db, results[0].case_id or "")
    assert (case.channel_version, case.return_waybill) == ("2", "SF100200300")


async def test_a_waybill_scanned_twice_at_once_is_received_once(db: Database) -> None:
    ctx = await setup(db)
    parcel = request(4, 4990, kind="return_refund", return_waybill="SF4455667788")
    case_id = (await on_return_request(parcel, ctx)).case_id or ""
    zhou = Sender("console", "小周")
    await asyncio.gather(
        on_chat_message(ChatMessage("scan-a", zhou, "SF4455667788"), ctx),
        on_chat_message(ChatMessage("scan-b", zhou, "SF4455667788"), ctx),
    )
    assert (await case_of(db, case_id)).status == "received"
    assert len(await outbox(db, "card.send")) == 1  # one inspection card
    texts = sorted(m.payload["text"] for m in await outbox(db, "text.send"))
    again = (
        f"{case_id} 已由 小周 于 11-21 10:00 签收，无需重复签收（当前状态：已签收待验货），"
        "请在验货卡片上选择结果"
    )
    assert texts == [again, f"已签收 {case_id}，请验货"]
