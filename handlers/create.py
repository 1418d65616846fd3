"""A new case from a channel's first event: its number, its customer, its route.

The first approval step's card goes out (or the case is auto-approved) in the
same transaction as the case row, like everything intake writes.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from bot.events import Item, ReturnRequest
from handlers import routing, steps
from handlers.context import Ctx
from handlers.people import member_named
from handlers.routing import Decision, RouteInput
from handlers.workflow import SYSTEM_ACTOR, Actor, Status, audit, fire, must
from storage.db import next_counter_stmt
from storage.models import ApprovalStep, Case, CaseItem, Customer, Evidence, Sequence

log = logging.getLogger(__name__)


async def _next_id(session: AsyncSession, ctx: Ctx) -> str:
    day = f"{ctx.local(ctx.now()):%y%m%d}"
    value = (
        await session.execute(next_counter_stmt(ctx.db, Sequence, f"case-{day}"))
    ).scalar_one()
    return f"RC-{day}-{value:04d}"


async def create_case(
    session: AsyncSession, ctx: Ctx, event: ReturnRequest, *, route: bool = True
) -> Case:
    """Store the case, its items and evidence; with `route`, route it to its tier."""
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
        items=case_items(event.items),
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
    flagged = bool(customer and customer.flagged)
    await route_case(session, ctx, case, decide(ctx, case, flagged=flagged))
    return case


def case_items(items: Iterable[Item]) -> list[CaseItem]:
    """The rows for a request's line items."""
    return [
        CaseItem(
            sku=i.sku, name=i.name, qty=i.qty, unit_price_fen=i.unit_price_fen, category=i.category
        )
        for i in items
    ]


def decide(ctx: Ctx, case: Case, *, flagged: bool) -> Decision:
    """The tier the case's current amount, kind, reason and items route to."""
    return routing.route(
        RouteInput(
            amount_fen=case.amount_fen,
            channel=case.channel,
            kind=case.kind,
            reason_code=case.reason_code,
            categories=frozenset(i.category for i in case.items if i.category),
            customer_flagged=flagged,
        ),
        ctx.settings.routing,
    )


async def route_case(session: AsyncSession, ctx: Ctx, case: Case, decision: Decision) -> None:
    """A `requested` case -> its tier: auto-approved, or step 1's card sent.

    `case.steps` must be empty: a new case, or one whose old chain handlers.revise
    took out. The new steps are inserted in the flush that deletes such old rows,
    and SQLAlchemy inserts before it deletes.
    """
    now = ctx.now()
    label = ctx.settings.routing.label(decision.tier)
    case.tier, case.sla_policy, case.attachments = (
        decision.tier,
        decision.sla,
        list(decision.attach),
    )
    if not decision.auto_approve:
        case.steps.extend(
            ApprovalStep(seq=n, role=role, state="waiting")
            for n, role in enumerate(decision.steps, start=1)
        )
    await session.flush()
    if decision.auto_approve:
        case.current_step = 0
        session.add(
            must(
                fire(
                    case,
                    "auto_approve",
                    SYSTEM_ACTOR,
                    now,
                    why=f"档位「{label}」自动通过",
                )
            )
        )
        await steps.after_approval(session, ctx, case)
        return
    session.add(
        must(
            fire(
                case,
                "route",
                SYSTEM_ACTOR,
                now,
                why=f"档位「{label}」：{' → '.join(decision.steps)}",
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
