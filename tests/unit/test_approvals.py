"""Approval rules the flow tests do not reach: four eyes on multi-step chains, what
customer service hears of a rejection, what the next step's approver sees."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import select

from bot.cards import Card, CardRenderer
from bot.events import ChatMessage, Sender
from bot.platforms import wecom_cards
from bot.settings import MemberConfig, templates_dir
from handlers import notify
from handlers.approvals import resend_unseen
from handlers.commands import on_chat_message
from handlers.intake import on_return_request
from handlers.people import sync_members
from storage.db import Database
from storage.models import OutboxMessage
from tests.support import FakeClock
from tests.unit.test_flow import case_of, make_ctx, outbox, request, setup, texts_to

RENDERER = CardRenderer(templates_dir())


async def test_one_person_cannot_approve_two_steps_of_one_chain(db: Database) -> None:
    # >5000 yuan needs the ops director and then the finance director: two people,
    # even when one member holds both roles.
    base = make_ctx(db)
    both = MemberConfig(name="钱总", roles=("ops_director", "finance_director"))
    ctx = dataclasses.replace(
        base, settings=dataclasses.replace(base.settings, members=(*base.settings.members, both))
    )
    async with db.transaction() as session:
        await sync_members(session, ctx.settings.members)
    case_id = (await on_return_request(request(1, 600000), ctx)).case_id or ""
    qian = Sender("console", "钱总")
    await on_chat_message(ChatMessage("q1", qian, f"/同意 {case_id}"), ctx)
    assert (await case_of(db, case_id)).current_step == 2
    await on_chat_message(ChatMessage("q2", qian, f"/同意 {case_id}"), ctx)
    assert (await case_of(db, case_id)).status == "pending_approval"
    assert "上一步" in [m.payload["text"] for m in await outbox(db, "text.send")][-1]
    await on_chat_message(ChatMessage("q3", Sender("console", "赵财务"), f"/同意 {case_id}"), ctx)
    assert (await case_of(db, case_id)).status == "refund_pending"


async def test_a_step_nobody_can_receive_alerts_and_is_sent_once_someone_can(
    db: Database,
) -> None:
    ctx = make_ctx(db)
    without_finance = tuple(m for m in ctx.settings.members if "finance_director" not in m.roles)
    ctx = dataclasses.replace(
        ctx, settings=dataclasses.replace(ctx.settings, members=without_finance)
    )
    async with db.transaction() as session:
        await sync_members(session, without_finance)
    case_id = (await on_return_request(request(40, 600000), ctx)).case_id or ""
    await on_chat_message(ChatMessage("d1", Sender("console", "李总监"), f"/同意 {case_id}"), ctx)
    alerts = [m for m in await outbox(db, "text.send") if m.destination == "console:管理员"]
    assert len(alerts) == 1 and "财务总监" in alerts[0].payload["text"]
    assert [c.destination for c in await outbox(db, "card.send")] == ["console:李总监"]

    full = make_ctx(db)  # 赵财务 joins; the next start sends the waiting card
    async with db.transaction() as session:
        await sync_members(session, full.settings.members)
        assert await resend_unseen(session, full) == 1
    async with db.transaction() as session:
        assert await resend_unseen(session, full) == 0
    cards = [c.destination for c in await outbox(db, "card.send")]
    assert cards == ["console:李总监", "console:赵财务"]
    assert (await case_of(db, case_id)).status == "pending_approval"


async def test_a_rejection_tells_customer_service_what_to_tell_the_buyer(db: Database) -> None:
    ctx = await setup(db)
    case_id = (await on_return_request(request(1, 13200), ctx)).case_id or ""
    reject = ChatMessage("j1", Sender("console", "王组长"), f"/驳回 {case_id} 超过七天无理由期限")
    await on_chat_message(reject, ctx)
    await on_chat_message(reject, ctx)  # redelivered: handled once, told once
    assert (await case_of(db, case_id)).status == "rejected"
    notices = await texts_to(db, "小美")
    assert notices == [
        f"【驳回通知】{case_id} 已驳回，请告知买家\n"
        "仅退款 ¥132.00 · 订单 SO1 · 买家 喵星人\n"
        "驳回人：王组长（客服组长），11-21 10:00\n"
        "原因：超过七天无理由期限\n"
        "可以这样告诉买家：您的仅退款申请（订单 SO1，¥132.00）未能通过审核，"
        "原因：超过七天无理由期限。如有疑问或新的凭证，请直接回复我们。"
    ]
    async with db.read() as session:
        row = (
            await session.scalars(
                select(OutboxMessage).where(OutboxMessage.destination == "console:小美")
            )
        ).one()
    assert row.case_id == case_id


async def test_the_notice_commits_with_the_rejection_or_not_at_all(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    ctx = await setup(db)
    case_id = (await on_return_request(request(1, 13200), ctx)).case_id or ""
    real = notify.send_text

    async def crash_on_the_reply(*args: Any, **kwargs: Any) -> None:
        if str(args[3]).startswith("已驳回"):  # the last write of the rejection
            raise RuntimeError("crash before commit")
        await real(*args, **kwargs)

    monkeypatch.setattr(notify, "send_text", crash_on_the_reply)
    with pytest.raises(RuntimeError):
        await on_chat_message(
            ChatMessage("x1", Sender("console", "王组长"), f"/驳回 {case_id} 不符"), ctx
        )
    assert (await case_of(db, case_id)).status == "pending_approval"
    assert await texts_to(db, "小美") == []


async def test_the_agent_who_keyed_the_case_in_is_the_one_told(db: Database) -> None:
    base = make_ctx(db)
    other = MemberConfig(name="小林", roles=("cs_agent",))
    ctx = dataclasses.replace(
        base, settings=dataclasses.replace(base.settings, members=(*base.settings.members, other))
    )
    async with db.transaction() as session:
        await sync_members(session, ctx.settings.members)
    mine = (await on_return_request(request(1, 13200, operator="小林"), ctx)).case_id or ""
    nobodys = (await on_return_request(request(2, 13200), ctx)).case_id or ""
    for n, case_id in enumerate((mine, nobodys)):
        await on_chat_message(
            ChatMessage(f"k{n}", Sender("console", "王组长"), f"/驳回 {case_id} 描述不符"), ctx
        )
    assert [t.split(" ")[0] for t in await texts_to(db, "小林")] == [
        f"【驳回通知】{mine}",
        f"【驳回通知】{nobodys}",
    ]
    assert [t.split(" ")[0] for t in await texts_to(db, "小美")] == [f"【驳回通知】{nobodys}"]


async def test_the_second_step_card_shows_who_approved_the_first_and_when(db: Database) -> None:
    clock = FakeClock(datetime(2026, 11, 23, 6, 7, tzinfo=UTC))  # 14:07 in Shanghai
    ctx = dataclasses.replace(await setup(db), clock=clock)
    case_id = (await on_return_request(request(1, 600000), ctx)).case_id or ""
    first = (await outbox(db, "card.send"))[0].payload["card"]
    assert all(label != "已审批" for label, _ in first["fields"])
    clock.advance(3600)
    await on_chat_message(ChatMessage("a1", Sender("console", "李总监"), f"/同意 {case_id}"), ctx)
    sent = [c for c in await outbox(db, "card.send") if c.destination == "console:赵财务"]
    card = Card.from_dict(sent[0].payload["card"])
    shown = "第1步 李总监 11-23 15:07 同意"
    assert ("已审批", shown) in card.fields
    # Every platform shows it: parsed back from the real templates.
    console = RENDERER.render("console", card)
    assert {"label": "已审批", "value": shown} in console["fields"]
    robot = RENDERER.render("wecom-robot", card)
    assert f'> 已审批：<font color="info">{shown}</font>' in robot["markdown"]["content"]
    wecom = wecom_cards.render(RENDERER, card, agent_id=1000002, task_id="rh-1-0a1b2c3d")
    assert {"keyname": "已审批", "value": shown} in wecom["horizontal_content_list"]
