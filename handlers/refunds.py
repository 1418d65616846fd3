"""The channel confirmed (or refused) a refund the outbox delivered."""

from __future__ import annotations

import logging

from sqlalchemy.ext.asyncio import AsyncSession

from bot.events import RefundResult
from handlers import notify
from handlers.approvals import load_case
from handlers.context import Ctx
from handlers.inbox import once
from handlers.people import holders
from handlers.workflow import Actor, Refusal, audit, fire

log = logging.getLogger(__name__)


async def on_refund_result(event: RefundResult, ctx: Ctx) -> None:
    key = f"refund:{event.case_id}:{'ok' if event.ok else 'failed'}"
    await once(ctx, key, "outbox", lambda s: _apply(s, ctx, event))


async def _apply(session: AsyncSession, ctx: Ctx, event: RefundResult) -> None:
    case = await load_case(session, ctx, event.case_id)
    if case is None:
        log.error("refund result for unknown case %s", event.case_id)
        return
    channel = Actor("channel", case.channel)
    if not event.ok:
        session.add(
            audit(
                case.id,
                channel,
                "refund_failed",
                ctx.now(),
                case.status,
                case.status,
                why=event.detail,
            )
        )
        await notify.tell(
            session,
            ctx,
            await holders(session, "finance_director"),
            f"⚠ {case.id} 退款失败：{event.detail}，请人工处理",
            case.id,
        )
        return
    result = fire(case, "refunded", channel, ctx.now(), why=event.detail or "渠道已退款")
    if isinstance(result, Refusal):
        log.info("case %s: refund confirmation ignored (%s)", case.id, result.reason)
        return
    session.add(result)
