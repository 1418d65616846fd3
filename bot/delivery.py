"""Outbox wiring: which performer handles which row, what follows a delivery, and
what each destination may receive.

`on_done` and `on_dead` run in the transaction that records the row's outcome
(bot/outbox.py), once per recorded outcome: a platform handle is stored, a
confirmed refund marks the case refunded, a dead refund is reported to finance,
and every dead letter alerts the admins, all together with the mark or not at all.

The shop channels are the money path: there a dead row holds its case's later
rows (an OMS must never see `refund_released` before the `approved` it follows)
until an admin revives or discards it, and the alert says so. In chat, a dead
row (a card update past its 72-hour code) releases the rest: a member missing
the next card is worse than a stale one.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from bot.channels.base import PREFIX as CHANNEL
from bot.events import RefundResult
from bot.outbox import OutboxWorker, Performer
from bot.outbox_limits import RateLimit, Window
from bot.platforms import dingtalk_robot, wecom
from bot.platforms.outbound import split_text
from bot.platforms.wecom_robot import ROBOT_PREFIX, ROBOT_TEXT_BYTES
from bot.settings import OutboxSettings
from handlers import notify, refunds
from handlers.approvals import lock_cases
from handlers.context import Ctx
from handlers.people import holders
from storage import outbox
from storage.models import CardRecord, Case, OutboxMessage

log = logging.getLogger(__name__)

STRICT = (f"{CHANNEL}:",)  # destinations where a dead row holds its case's later rows
# WeCom app messages: 30 a minute and 1,000 an hour per member per app; the excess
# is dropped without a word (developer.work.weixin.qq.com/document/path/90454).
WECOM_MEMBER_WINDOWS = (Window(30, 60), Window(1000, 3600))
CARD_KINDS = ("card.send", "card.update")  # their result carries the card's new handle


def chat_cost(text_bytes: int) -> Callable[[OutboxMessage], int]:
    """Messages a chat row takes: a card one, a text one per `text_bytes` piece (the
    adapters split longer ones), a card update or media download none."""

    def cost(msg: OutboxMessage) -> int:
        if msg.kind == "card.send" or msg.kind.startswith("digest."):
            return 1
        if msg.kind == "text.send":
            return len(split_text(str(msg.payload.get("text", "")), text_bytes))
        return 0

    return cost


def chat_limits(settings: OutboxSettings) -> dict[str, RateLimit]:
    """Per-destination limits: each group robot, and each member of the WeCom app
    (whose waiting texts coalesce; a robot's notices stay one message each)."""
    return {
        ROBOT_PREFIX: RateLimit(
            (Window(settings.rate_per_minute, 60),), chat_cost(ROBOT_TEXT_BYTES)
        ),
        f"{wecom.NAME}:": RateLimit(
            WECOM_MEMBER_WINDOWS, chat_cost(wecom.TEXT_BYTES), wecom.TEXT_BYTES
        ),
        dingtalk_robot.ROBOT_PREFIX: RateLimit(
            (Window(dingtalk_robot.ROBOT_PER_MINUTE, 60),), chat_cost(dingtalk_robot.TEXT_BYTES)
        ),
    }


def _confirmed(msg: OutboxMessage, result: dict[str, Any]) -> bool:
    """A refund the channel confirmed: its case becomes refunded."""
    return msg.kind == notify.REFUND_KIND and bool(msg.case_id and result.get("confirmed"))


def build_worker(ctx: Ctx, performers: Mapping[str, Performer], **kwargs: Any) -> OutboxWorker:
    """The delivery worker with the handlers' follow-ups wired in as its hooks."""

    async def preload(
        session: AsyncSession, sent: Sequence[tuple[OutboxMessage, dict[str, Any]]]
    ) -> Sequence[CardRecord | Case]:
        """What the round's `on_done` hooks look up, in one query each: the cards whose
        handle they store, and the cases of confirmed refunds, locked as `load_case`
        locks them (so each hook finds its own in the session)."""
        ids = {r["card_id"] for m, r in sent if m.kind in CARD_KINDS and r.get("platform_ref")}
        refunded = {m.case_id for m, r in sent if _confirmed(m, r)}
        found: list[CardRecord | Case] = []
        if len(ids) > 1:
            found += await session.scalars(select(CardRecord).where(CardRecord.id.in_(ids)))
        if len(refunded) > 1:
            found += await lock_cases(session, ctx, (i for i in refunded if i))
        return found

    async def on_done(session: AsyncSession, msg: OutboxMessage, result: dict[str, Any]) -> None:
        ref = result.get("platform_ref")
        if msg.kind in CARD_KINDS and ref:
            record = await session.get(CardRecord, result["card_id"])
            if record is not None:
                record.platform_ref = ref
        elif _confirmed(msg, result) and msg.case_id:
            await refunds.record_result(session, ctx, RefundResult(msg.case_id, ok=True))

    async def on_dead(session: AsyncSession, msg: OutboxMessage) -> None:
        if msg.kind == notify.REFUND_KIND and msg.case_id:
            await refunds.record_result(
                session, ctx, RefundResult(msg.case_id, ok=False, detail=msg.last_error[:200])
            )
        if msg.payload.get("alert"):
            return  # never alert about a dead alert
        admins = await holders(session, "admin")
        text = (
            f"⚠ 投递失败已转入死信：{msg.kind} → {msg.destination}"
            f"（售后单 {msg.case_id or '—'}）：{msg.last_error[:200]}"
        )
        held = await outbox.held_behind(session, msg) if msg.destination.startswith(STRICT) else 0
        if held:
            text += (
                f"\n该单发往此处的后续 {held} 条消息已暂停，以保证顺序。修复后运行 "
                f"`returnhub outbox retry {msg.id}` 按序补发；确认此条不再需要则运行 "
                f"`returnhub outbox discard {msg.id}` 作废它并放行后续。"
            )
        await notify.tell(session, ctx, admins, text, msg.case_id, alert=True)

    return OutboxWorker(
        ctx.db,
        ctx.settings.outbox,
        dict(performers),
        clock=ctx.clock,
        on_done=on_done,
        on_dead=on_dead,
        preload=preload,
        strict=STRICT,
        by_case=STRICT,  # the shop channels' APIs; a person's chat keeps its order
        **kwargs,
    )
