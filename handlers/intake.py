"""A return request or status update from a channel -> one case, routed.

The hot path: dedupe, store, route and enqueue in one short transaction. An
event applies only when its channel version is newer than the stored one.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from bot.events import ReturnRequest
from handlers import notify, steps
from handlers.context import Ctx
from handlers.inbox import Duplicate, once
from handlers.people import member_named
from handlers.routing import RouteInput
from handlers.routing import route as route_case
from handlers.workflow import OPEN, SYSTEM_ACTOR, Actor, Refusal, Status, audit, fire, must
from storage import timers
from storage.db import next_counter_stmt
from storage.models import ApprovalStep, Case, CaseItem, Customer, Evidence, Sequence

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class IntakeResult:
    case_id: str | None
    duplicate: bool
    status: str = ""


def newer(candidate: str, stored: str) -> bool:
    """Channel versions: integers compare as numbers, anything else (timestamps) as text."""
    if candidate.isdigit() and stored.isdigit():
        return int(candidate) > int(stored)
    return candidate > stored


async def on_return_request(event: ReturnRequest, ctx: Ctx) -> IntakeResult:
    result = await once(ctx, event.key, event.channel, lambda s: _apply(s, ctx, event))
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
        query = query.with_for_update(**ctx.db.for_update())
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
        case = await _create(session, ctx, event, route=event.status != "cancelled")
        if event.status == "cancelled":
            await cancel(session, ctx, case, Actor("channel", event.channel), "买家取消售后申请")
        return IntakeResult(case.id, False, case.status)
    if not newer(event.version, case.channel_version):
        log.info(
            "case %s: channel version %s is not newer than %s; ignored",
            case.id,
            event.version,
            case.channel_version,
        )
        return IntakeResult(case.id, True, case.status)
    case.channel_version = event.version
    channel = Actor("channel", event.channel)
    if event.status == "buyer_shipped":
        await _buyer_shipped(session, ctx, case, event, channel)
    elif event.status == "cancelled":
        await cancel(session, ctx, case, channel, "买家取消售后申请")
    elif event.status == "refunded":
        await _refunded(session, ctx, case, channel)
    else:
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
    """The buyer or the channel closed it: close the case, every open card, every timer."""
    if Status(case.status) not in OPEN:
        return
    session.add(must(fire(case, "close", actor, ctx.now(), why=why)))
    await notify.close_cards(session, ctx, case.id, f"已关闭：{why}")
    await timers.cancel_for_case(session, case.id)
    await notify.channel_event(session, ctx, case, "closed")


async def _next_id(session: AsyncSession, ctx: Ctx) -> str:
    day = f"{ctx.local(ctx.now()):%y%m%d}"
    value = (
        await session.execute(next_counter_stmt(ctx.db, Sequence, f"case-{day}"))
    ).scalar_one()
    return f"RC-{day}-{value:04d}"


async def _create(
    session: AsyncSession, ctx: Ctx, event: ReturnRequest, *, route: bool = True
) -> Case:
    now = ctx.now()
    customer = await _customer(session, event)
    raised_by = await member_named(session, event.operator) if event.operator else None
    case = Case(
        id=await _next_id(session, ctx),
        channel=event.channel,
        shop=event.shop,
        external_id=event.external_id,
        order_id=event.order_id,
        kind=event.kind,
        reason_code=event.reason_code,
        reason_text=event.reason_text,
        amount_fen=event.amount_fen,
        currency=event.currency,
        buyer_ref=event.buyer_ref,
        buyer_nick=event.buyer_nick,
        return_waybill=event.return_waybill,
        carrier=event.carrier,
        status=Status.REQUESTED.value,
        channel_version=event.version,
        raised_by=raised_by.id if raised_by else None,
        created_at=now,
        updated_at=now,
        attachments=[],
        steps=[],
        items=[
            CaseItem(
                sku=i.sku,
                name=i.name,
                qty=i.qty,
                unit_price_fen=i.unit_price_fen,
                category=i.category,
            )
            for i in event.items
        ],
    )
    session.add(case)
    for url in event.evidence:
        session.add(Evidence(case_id=case.id, kind="url", ref=url, added_by=event.channel, at=now))
    session.add(
        audit(
            case.id,
            Actor("channel", event.channel),
            "created",
            now,
            "",
            case.status,
            detail={"event": event.key, "amount_fen": event.amount_fen},
        )
    )
    if not route:
        return case
    decision = route_case(
        RouteInput(
            amount_fen=event.amount_fen,
            channel=event.channel,
            kind=event.kind,
            reason_code=event.reason_code,
            categories=frozenset(i.category for i in event.items if i.category),
            customer_flagged=bool(customer and customer.flagged),
        ),
        ctx.settings.routing,
    )
    case.tier, case.sla_policy, case.attachments = (
        decision.tier,
        decision.sla,
        list(decision.attach),
    )
    await session.flush()
    if decision.auto_approve:
        session.add(
            must(
                fire(case, "auto_approve", SYSTEM_ACTOR, now, why=f"档位 {decision.tier} 自动通过")
            )
        )
        await steps.after_approval(session, ctx, case)
        return case
    case.steps.extend(
        ApprovalStep(seq=n, role=role, state="waiting")
        for n, role in enumerate(decision.steps, start=1)
    )
    session.add(
        must(
            fire(
                case,
                "route",
                SYSTEM_ACTOR,
                now,
                why=f"档位 {decision.tier}：{' → '.join(decision.steps)}",
            )
        )
    )
    await session.flush()
    sent = await steps.open_step(session, ctx, case, case.steps[0])
    if sent == 0:
        log.warning(
            "case %s: nobody holds role %s; the card waits for a member",
            case.id,
            decision.steps[0],
        )
    return case


async def _customer(session: AsyncSession, event: ReturnRequest) -> Customer | None:
    if not event.buyer_ref:
        return None
    found = (
        await session.scalars(
            select(Customer).where(
                Customer.channel == event.channel, Customer.buyer_ref == event.buyer_ref
            )
        )
    ).first()
    if found is None:
        found = Customer(channel=event.channel, buyer_ref=event.buyer_ref, nick=event.buyer_nick)
        session.add(found)
    return found
