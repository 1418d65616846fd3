"""Outbox wiring: which performer handles which row, and what follows a delivery.

`on_done` and `on_dead` may run twice for one row (at-least-once): both are
idempotent (a platform handle is overwritten with the same value; the refund
result is claimed once in the inbox).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from bot.events import RefundResult
from bot.outbox import OutboxWorker, Performer
from handlers import notify, refunds
from handlers.context import Ctx
from handlers.people import holders
from storage.models import CardRecord, OutboxMessage

log = logging.getLogger(__name__)


def build_worker(ctx: Ctx, performers: Mapping[str, Performer], **kwargs: Any) -> OutboxWorker:
    async def on_done(msg: OutboxMessage, result: dict[str, Any]) -> None:
        ref = result.get("platform_ref")
        if msg.kind in ("card.send", "card.update") and ref:
            async with ctx.db.transaction() as session:
                record = await session.get(CardRecord, result["card_id"])
                if record is not None:
                    record.platform_ref = ref
        elif msg.kind == "channel.refund" and msg.case_id and result.get("confirmed"):
            await refunds.on_refund_result(RefundResult(msg.case_id, ok=True), ctx)

    async def on_dead(msg: OutboxMessage) -> None:
        if msg.kind == "channel.refund" and msg.case_id:
            await refunds.on_refund_result(
                RefundResult(msg.case_id, ok=False, detail=msg.last_error[:200]), ctx
            )
        if msg.payload.get("alert"):
            return  # never alert about a dead alert
        async with ctx.db.transaction() as session:
            admins = await holders(session, "admin")
            text = (
                f"⚠ 投递失败已转入死信：{msg.kind} → {msg.destination}"
                f"（售后单 {msg.case_id or '—'}）：{msg.last_error[:200]}"
            )
            await notify.tell(session, ctx, admins, text, msg.case_id, alert=True)

    return OutboxWorker(
        ctx.db,
        ctx.settings.outbox,
        dict(performers),
        clock=ctx.clock,
        on_done=on_done,
        on_dead=on_dead,
        **kwargs,
    )
