"""Chat command grammar: odd input gets a clear reply and changes nothing."""

from __future__ import annotations

import dataclasses

import pytest
from sqlalchemy import func, select

from bot.events import ChatMessage, Sender
from handlers.actions import on_card_action
from handlers.commands import on_chat_message
from handlers.intake import on_return_request
from storage.db import Database
from storage.models import InboxKey
from tests.support import START, FakeClock
from tests.unit.test_flow import card_token, case_of, click, outbox, request, setup, texts_to

WANG = Sender("console", "王组长")


@pytest.mark.parametrize("text", ["/", "／", " / "])
async def test_a_bare_slash_gets_the_help_hint(db: Database, text: str) -> None:
    ctx = await setup(db)
    await on_chat_message(ChatMessage("b1", Sender("console", "王组长"), text), ctx)
    assert "/帮助" in [m.payload["text"] for m in await outbox(db, "text.send")][-1]
    async with db.read() as session:
        assert await session.scalar(select(func.count(InboxKey.key))) == 1


async def test_a_reason_sent_after_the_question_expired_is_not_a_mystery(db: Database) -> None:
    clock = FakeClock(START)
    ctx = dataclasses.replace(await setup(db), clock=clock)
    case_id = (await on_return_request(request(1, 13200), ctx)).case_id or ""
    await on_card_action(
        click(1, "王组长", await card_token(db, case_id, "王组长", "reject")), ctx
    )
    clock.advance(31 * 60)
    await on_chat_message(ChatMessage("late", WANG, "商品已使用"), ctx)
    assert (await case_of(db, case_id)).status == "pending_approval"
    assert (await texts_to(db, "王组长"))[-1] == (
        f"对 {case_id} 的「驳回」已等待超过 30 分钟，已自动取消，这条消息没有被当作回复。"
        "请重新点击卡片按钮，或发送 /帮助 查看命令"
    )
    await on_chat_message(ChatMessage("again", WANG, "商品已使用"), ctx)
    assert (await texts_to(db, "王组长"))[-1] == "发送 /帮助 查看可用命令"


async def test_risk_sees_its_commands_in_help(db: Database) -> None:
    ctx = await setup(db)
    await on_chat_message(ChatMessage("h1", Sender("console", "陈风控"), "/帮助"), ctx)
    listed = (await texts_to(db, "陈风控"))[-1]
    assert "/驳回退款 RC-… 原因" in listed and "/取消" in listed and "/同意" not in listed


async def test_lookup_of_a_rejected_case_says_why(db: Database) -> None:
    ctx = await setup(db)
    case_id = (await on_return_request(request(1, 13200), ctx)).case_id or ""
    await on_chat_message(ChatMessage("j1", WANG, f"/驳回 {case_id} 超过七天"), ctx)
    await on_chat_message(ChatMessage("q1", Sender("console", "小美"), f"/查单 {case_id}"), ctx)
    answer = (await texts_to(db, "小美"))[-1]
    assert "第1步 客服组长：已驳回 王组长 11-21 10:00（原因：超过七天）" in answer
