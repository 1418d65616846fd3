"""Warehouse and risk replies say what happened, not more."""

from __future__ import annotations

import pytest

from bot.events import ChatMessage, Sender
from handlers.actions import on_card_action
from handlers.commands import on_chat_message
from handlers.intake import on_return_request
from storage.db import Database
from tests.unit.test_flow import card_token, case_of, click, outbox, request, setup


@pytest.mark.parametrize(
    ("action", "status", "reply"),
    [
        ("resolve_refund", "refund_pending", "已放行 {case}，全额退款 ¥49.90 已提交渠道"),
        ("resolve_reject", "rejected", "已驳回 {case} 的退款"),
    ],
)
async def test_a_risk_decision_is_answered_plainly(
    db: Database, action: str, status: str, reply: str
) -> None:
    # "已全额退款" would claim the money went back; it has only been asked for.
    ctx = await setup(db)
    parcel = request(1, 4990, kind="return_refund", return_waybill="SF2233445566")
    case_id = (await on_return_request(parcel, ctx)).case_id or ""
    await on_chat_message(ChatMessage("s1", Sender("console", "小周"), "SF2233445566"), ctx)
    damaged = await card_token(db, case_id, "小周", "damaged")
    await on_card_action(click(1, "小周", damaged), ctx)
    await on_card_action(click(2, "陈风控", await card_token(db, case_id, "陈风控", action)), ctx)
    assert (await case_of(db, case_id)).status == status
    texts = [m.payload["text"] for m in await outbox(db, "text.send")]
    assert texts[-1] == reply.format(case=case_id)
