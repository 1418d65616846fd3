"""The channel confirmed (or refused) a refund the outbox delivered.

Called from the delivery worker's hooks (bot/delivery.py) inside the transaction
that records the refund row's outcome, which makes it once per outcome: no inbox
key, so a dead letter revived by an operator that dies again is reported again.
"""

from __future__ import annotations

import logging

from sqlalchemy.ext.asyncio import AsyncSession

from bot.events import RefundResult
from bot.money import yuan_zh
from handlers import notify
from handlers.approvals import load_case
from handlers.context import Ctx
from handlers.people import holders
from handlers.workflow import Actor, Refusal, Status, audit, fire

log = logging.getLogger(__name__)


async def record_result(session: AsyncSession, ctx: Ctx, event: RefundResult) -> None:
    """Refunded on success; on failure an audit row and a notice to finance."""
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
        if case.status == Status.CLOSED:
            # The command was on the wire when the channel closed the case: money left
            # for a closed case, which a person must reconcile.
            session.add(
                audit(
                    case.id,
                    channel,
                    "refunded_after_close",
                    ctx.now(),
                    case.status,
                    case.status,
                    why=event.detail or "渠道已退款",
                )
            )
            await notify.tell(
                session,
                ctx,
                await holders(session, "finance_director"),
                f"⚠ {case.id} 已关闭，但渠道确认已退款 {yuan_zh(case.refund_fen or 0)}，请核对",
                case.id,
            )
        return
    session.add(result)
