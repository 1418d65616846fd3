"""Outbox wiring: which performer handles which row, and what follows a delivery.

`on_done` and `on_dead` run in the transaction that records the row's outcome
(bot/outbox.py), once per recorded outcome: a platform handle is stored, a
confirmed refund marks the case refunded, a dead refund is reported to finance,
and every dead letter alerts the admins, all together with the mark or not at all.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from bot.events import RefundResult
from bot.outbox import OutboxWorker, Performer
from handlers import notify, refunds
from handlers.context import Ctx
from handlers.people import holders
from storage.models import CardRecord, Evidence, OutboxMessage

log = logging.getLogger(__name__)


def build_worker(ctx: Ctx, performers: Mapping[str, Performer], **kwargs: Any) -> OutboxWorker:
    """The delivery worker with the handlers' follow-ups wired in as its hooks."""

    async def on_done(session: AsyncSession, msg: OutboxMessage, result: dict[str, Any]) -> None:
        ref = result.get("platform_ref")
        if msg.kind in ("card.send", "card.update") and ref:
            record = await session.get(CardRecord, result["card_id"])
            if record is not None:
                record.platform_ref = ref
        elif msg.kind == notify.MEDIA_FETCH_KIND and result.get("path"):
            evidence = await session.get(Evidence, result["evidence_id"])
            if evidence is not None:
                evidence.ref = f"file:{result['path']}"
        elif msg.kind == notify.REFUND_KIND and msg.case_id and result.get("confirmed"):
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
