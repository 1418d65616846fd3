"""Chat command grammar: odd input gets a clear reply and changes nothing."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from bot.events import ChatMessage, Sender
from handlers.commands import on_chat_message
from storage.db import Database
from storage.models import InboxKey
from tests.unit.test_flow import outbox, setup


@pytest.mark.parametrize("text", ["/", "／", " / "])
async def test_a_bare_slash_gets_the_help_hint(db: Database, text: str) -> None:
    ctx = await setup(db)
    await on_chat_message(ChatMessage("b1", Sender("console", "王组长"), text), ctx)
    assert "/帮助" in [m.payload["text"] for m in await outbox(db, "text.send")][-1]
    async with db.read() as session:
        assert await session.scalar(select(func.count(InboxKey.key))) == 1
