"""Exchanges: an inspected parcel asks the channel to reship; the case ends
`exchange_shipped` only when the channel reports the new waybill.

The reshipment request leaves through the outbox as the channel event
`exchange_requested` with the SKUs to send (the generic channel POSTs it to the
OMS, docs/generic-channel.md). The OMS answers later on the return webhook with
status `exchange_shipped` (and `exchange_waybill`) or `exchange_failed`; a
failure keeps the case `exchange_pending`, writes an audit row and alerts the
warehouse, the CS leads and the admins, so a buyer is never left waiting unseen.
A request the OMS never accepts dead-letters, which alerts the admins as well.
"""

from __future__ import annotations

import logging

from sqlalchemy.ext.asyncio import AsyncSession

from bot.events import ReturnRequest
from handlers import notify
from handlers.context import Ctx
from handlers.people import holders
from handlers.workflow import Actor, Refusal, audit, fire
from storage.models import Case

log = logging.getLogger(__name__)

SHIPPED, FAILED = "exchange_shipped", "exchange_failed"
STATUSES = (SHIPPED, FAILED)


async def request(
    session: AsyncSession,
    ctx: Ctx,
    case: Case,
    actor: Actor,
    why: str,
    transition: str = "request_exchange",
) -> Refusal | None:
    """Move to exchange_pending and ask the channel to reship the case's items."""
    result = fire(case, transition, actor, ctx.now(), why=why)
    if isinstance(result, Refusal):
        return result
    session.add(result)
    items = [{"sku": i.sku, "name": i.name, "qty": i.qty} for i in case.items]
    await notify.channel_event(
        session,
        ctx,
        case,
        "exchange_requested",
        items=items,
        return_waybill=case.return_waybill,
    )
    return None


def requested_text(case: Case) -> str:
    skus = "、".join(f"{i.sku} ×{i.qty}" for i in case.items)
    return f"已向渠道提交 {case.id} 的换货补发（{skus}），收到新运单后结束"


async def on_channel_status(
    session: AsyncSession, ctx: Ctx, case: Case, event: ReturnRequest, channel: Actor
) -> None:
    """The channel reports the reshipment: shipped (with its waybill) or failed."""
    now = ctx.now()
    if event.status == SHIPPED:
        waybill = f"{event.exchange_carrier or ''} {event.exchange_waybill or ''}".strip()
        result = fire(case, "ship_exchange", channel, now, why=f"换货已发出 {waybill}")
        if isinstance(result, Refusal):
            log.info("case %s: exchange_shipped ignored (%s)", case.id, result.reason)
            session.add(
                audit(case.id, channel, "exchange_ignored", now, case.status, case.status,
                      why=result.reason, detail={"exchange_waybill": event.exchange_waybill})
            )  # fmt: skip
            return
        case.exchange_waybill = event.exchange_waybill
        case.exchange_carrier = event.exchange_carrier
        session.add(result)
        agents = await holders(session, "cs_agent")
        await notify.tell(session, ctx, agents, f"{case.id} 换货已发出，新运单 {waybill}", case.id)
        return
    why = event.reason_text or "渠道未说明原因"
    session.add(audit(case.id, channel, FAILED, now, case.status, case.status, why=why))
    case.updated_at = now
    people = {
        m.id: m for role in ("warehouse", "cs_lead", "admin") for m in await holders(session, role)
    }
    await notify.tell(
        session,
        ctx,
        people.values(),
        f"⚠ {case.id} 换货补发失败：{why}。请人工处理（渠道重新补发后回传 exchange_shipped）",
        case.id,
        alert=True,
    )
