"""A return request or status update from a channel -> one case, routed.

The hot path: dedupe, store, route and enqueue in one short transaction. An
event applies only when its channel version is newer than the stored one
(handlers/versions.py); a newer one that changes the request is applied by
handlers/revise.py. An event that conflicts with the case (versions of two
kinds, a change after approval) is refused: the transaction rolls back, its
inbox key included, and the result carries the reason for a 409.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import selectinload

from bot.events import ReturnRequest
from handlers import notify
from handlers.context import Ctx
from handlers.create import create_case
from handlers.inbox import Duplicate, once
from handlers.notify import REFUND_KIND
from handlers.revise import Refused, revise
from handlers.versions import Unordered, newer
from handlers.workflow import OPEN, Actor, Refusal, Status, audit, fire, must
from storage import outbox, timers
from storage.models import ApprovalStep, Case

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class IntakeResult:
    case_id: str | None
    duplicate: bool
    status: str = ""
    refused: str = ""  # why the event was refused (409); nothing was stored


async def on_return_request(event: ReturnRequest, ctx: Ctx) -> IntakeResult:
    """Apply one channel event once; a redelivery answers with the case it made."""
    try:
        result = await once(ctx, event.key, event.channel, lambda s: _apply(s, ctx, event))
    except Refused as exc:
        log.warning("channel event %s refused: %s", event.key, exc.message)
        async with ctx.db.read() as session:
            case = await _find(session, ctx, event, lock=False)
        return IntakeResult(
            case.id if case else None, False, case.status if case else "", exc.message
        )
    if isinstance(result, Duplicate):
        async with ctx.db.read() as session:
            case = await _find(session, ctx, event, lock=False)
        return IntakeResult(case.id if case else None, True, case.status if case else "")
    return result


async def _find(
    session: AsyncSession, ctx: Ctx, event: ReturnRequest, *, lock: bool
) -> Case | None:
    query = select(Case).where(
        Case.channel == event.channel,
        Case.shop == event.shop,
        Case.external_id == event.external_id,
    )
    if lock:
        query = query.with_for_update(**ctx.db.for_update()).options(
            selectinload(Case.items), selectinload(Case.steps)
        )
    return (await session.scalars(query)).first()


async def _apply(session: AsyncSession, ctx: Ctx, event: ReturnRequest) -> IntakeResult:
    case = await _find(session, ctx, event, lock=True)
    if case is None and event.status == "refunded":
        log.warning(
            "refund report for unknown case %s/%s ignored", event.channel, event.external_id
        )
        return IntakeResult(None, False, "")
    if case is None:
        # A cancel that overtook its request still makes a (closed) case, so the
        # late request, carrying an older version, cannot open it again.
        case = await create_case(session, ctx, event, route=event.status != "cancelled")
        if event.status == "cancelled":
            await cancel(session, ctx, case, Actor("channel", event.channel), "买家取消售后申请")
        return IntakeResult(case.id, False, case.status)
    try:
        is_newer = newer(event.version, case.channel_version)
    except Unordered as exc:
        raise Refused(f"售后单 {case.id}：{exc}") from None
    if not is_newer:
        log.info(
            "case %s: channel version %s is not newer than %s; ignored",
            case.id,
            event.version,
            case.channel_version,
        )
        return IntakeResult(case.id, True, case.status)
    case.channel_version = event.version
    channel = Actor("channel", event.channel)
    # Only a request or a shipment restates the request; a cancel or a refund report
    # ends the case whatever it carries.
    revised = event.status in ("requested", "buyer_shipped") and await revise(
        session, ctx, case, event, channel
    )
    if event.status == "buyer_shipped":
        await _buyer_shipped(session, ctx, case, event, channel)
    elif event.status == "cancelled":
        await cancel(session, ctx, case, channel, "买家取消售后申请")
    elif event.status == "refunded":
        await _refunded(session, ctx, case, channel)
    elif not revised:
        session.add(
            audit(
                case.id,
                channel,
                "updated",
                ctx.now(),
                case.status,
                case.status,
                detail={"version": event.version},
            )
        )
        case.updated_at = ctx.now()
    return IntakeResult(case.id, False, case.status)


async def _buyer_shipped(
    session: AsyncSession, ctx: Ctx, case: Case, event: ReturnRequest, channel: Actor
) -> None:
    case.return_waybill = event.return_waybill or case.return_waybill
    case.carrier = event.carrier or case.carrier
    if case.status == Status.AWAITING_RETURN:
        session.add(
            must(
                fire(
                    case,
                    "buyer_shipped",
                    channel,
                    ctx.now(),
                    why=f"买家已寄回 {case.carrier or ''} {case.return_waybill}",
                )
            )
        )
    else:
        case.updated_at = ctx.now()
        session.add(
            audit(
                case.id,
                channel,
                "waybill",
                ctx.now(),
                case.status,
                case.status,
                why=f"退货运单 {case.return_waybill}",
            )
        )


async def _refunded(session: AsyncSession, ctx: Ctx, case: Case, channel: Actor) -> None:
    """The channel reports the money went back (the OMS did it on `refund_released`)."""
    result = fire(case, "refunded", channel, ctx.now(), why="渠道确认已退款")
    if isinstance(result, Refusal):
        log.info("case %s: refunded report ignored (%s)", case.id, result.reason)
        session.add(
            audit(
                case.id,
                channel,
                "refunded_ignored",
                ctx.now(),
                case.status,
                case.status,
                why=result.reason,
            )
        )
        return
    session.add(result)


async def cancel(session: AsyncSession, ctx: Ctx, case: Case, actor: Actor, why: str) -> None:
    """The buyer or the channel closed it: close the case, every open card, every timer,
    and withdraw a refund command that has not left yet (no money for a closed case)."""
    if Status(case.status) not in OPEN:
        return
    withdrawn = await outbox.void_pending(session, case.id, REFUND_KIND, now=ctx.now())
    detail = {"refund_withdrawn": withdrawn} if withdrawn else None
    session.add(must(fire(case, "close", actor, ctx.now(), why=why, detail=detail)))
    undecided = await session.scalars(
        select(ApprovalStep).where(
            ApprovalStep.case_id == case.id, ApprovalStep.state.in_(("waiting", "pending"))
        )
    )
    for step in undecided:
        step.state = "cancelled"
    await notify.close_cards(session, ctx, case.id, f"已关闭：{why}")
    await timers.cancel_for_case(session, case.id)
    await notify.channel_event(session, ctx, case, "closed")
