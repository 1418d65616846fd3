"""Approval rules the flow tests do not reach: four eyes on multi-step chains, what
the next step's approver sees."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime

from bot.cards import Card, CardRenderer
from bot.events import ChatMessage, Sender
from bot.platforms import wecom_cards
from bot.settings import MemberConfig, templates_dir
from handlers.approvals import resend_unseen
from handlers.commands import on_chat_message
from handlers.intake import on_return_request
from handlers.people import sync_members
from storage.db import Database
from tests.support import FakeClock
from tests.unit.test_flow import case_of, make_ctx, outbox, request, setup

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
