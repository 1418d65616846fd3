"""Approval rules the flow tests do not reach: four eyes on multi-step chains."""

from __future__ import annotations

import dataclasses

from bot.events import ChatMessage, Sender
from bot.settings import MemberConfig
from handlers.commands import on_chat_message
from handlers.intake import on_return_request
from handlers.people import sync_members
from storage.db import Database
from tests.unit.test_flow import case_of, make_ctx, outbox, request


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
