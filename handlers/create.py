"""A new case from a channel's first event: its number, its row, its route.

Pure decisions: `new_case` makes the case (a transient model object, its items
and evidence) and `routed` decides its tier and what that sends, into an
`Effects` list. Batch intake (handlers/intake.py) writes them with Core
statements (storage/intake_rows.py); `route_case`, for a case handlers/revise.py
re-routes, writes them through the ORM session. The first approval step's card
goes out (or the case is auto-approved) in the same transaction as the case row.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm.attributes import set_committed_value

from bot.events import Item, ReturnRequest
from handlers import abuse, routing, steps
from handlers.context import Ctx, naive_utc
from handlers.effects import Effects
from handlers.people import Roster
from handlers.risk import history_lines
from handlers.routing import Decision, RouteInput
from handlers.workflow import SYSTEM_ACTOR, Actor, Status, audit, fire, must
from storage.history import customer_history
from storage.models import ApprovalStep, Case, CaseItem, Evidence

log = logging.getLogger(__name__)


def counter(ctx: Ctx, now: datetime) -> tuple[str, str]:
    """The day's case-number counter name and the day as case ids show it."""
    day = f"{ctx.local(now):%y%m%d}"
    return f"case-{day}", day


def case_number(day: str, value: int) -> str:
    return f"RC-{day}-{value:04d}"


def new_case(
    fx: Effects, event: ReturnRequest, case_id: str, raised_by: int | None
) -> tuple[Case, list[Evidence]]:
    """The case `event` opens, not routed yet, and its evidence.

    Transient rows for storage/intake_rows.py's Core inserts, never added to a
    session: its items and (empty) steps are set as if loaded, without the ORM's
    collection events and backrefs, which cost as much as the rest of the case
    (opening.py writes each item's and step's `case_id` itself)."""
    now = fx.now
    case = Case(
        id=case_id,
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
        raised_by=raised_by,
        channel_deadline_at=naive_utc(event.deadline_at) if event.deadline_at else None,
        created_at=now,
        updated_at=now,
        attachments=[],
    )
    set_committed_value(case, "items", case_items(event.items))
    set_committed_value(case, "steps", [])
    evidence = [
        Evidence(case_id=case_id, kind="url", ref=url, added_by=event.channel, at=now)
        for url in event.evidence
    ]
    return case, evidence


def created(fx: Effects, event: ReturnRequest, case: Case) -> None:
    """The audit row of the case `event` opened, before any of its routing."""
    fx.audit(
        audit(
            case.id,
            Actor("channel", event.channel),
            "created",
            fx.now,
            "",
            Status.REQUESTED.value,
            detail={"event": event.key, "amount_fen": event.amount_fen},
        )
    )


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


def wants_history(decision: Decision, case: Case) -> bool:
    """Whether step 1's card shows the buyer's history (the director tier)."""
    return (
        not decision.auto_approve
        and "customer_history" in decision.attach
        and bool(case.buyer_ref)
    )


def routed(
    ctx: Ctx,
    fx: Effects,
    case: Case,
    decision: Decision,
    roster: Roster,
    history: tuple[str, ...] = (),
) -> None:
    """A `requested` case -> its tier: auto-approved, or step 1's card sent.

    `case.steps` must be empty: a new case, or one whose old chain handlers.revise
    took out. `history` is what step 1's card shows when `wants_history`.
    """
    label = ctx.settings.routing.label(decision.tier)
    case.tier, case.sla_policy, case.attachments = (
        decision.tier,
        decision.sla,
        list(decision.attach),
    )
    if decision.auto_approve:
        case.current_step = 0
        why = f"档位「{label}」自动通过"
        fx.audit(must(fire(case, "auto_approve", SYSTEM_ACTOR, fx.now, why=why)))
        steps.approved(ctx, fx, case)
        return
    case.steps.extend(
        ApprovalStep(seq=n, role=role, state="waiting")
        for n, role in enumerate(decision.steps, start=1)
    )
    why = f"档位「{label}」：{' → '.join(decision.steps)}"
    fx.audit(must(fire(case, "route", SYSTEM_ACTOR, fx.now, why=why)))
    first = case.steps[0]
    admins = roster.holders("admin")
    if steps.opened(ctx, fx, case, first, roster.holders(first.role), admins, history) == 0:
        log.warning(
            "case %s: nobody holds role %s; the card waits for a member", case.id, first.role
        )


async def route_case(session: AsyncSession, ctx: Ctx, case: Case, decision: Decision) -> None:
    """`routed`, written through the ORM session (a case handlers.revise re-routes).

    The new steps are inserted in the flush that deletes the old chain's rows, and
    SQLAlchemy inserts before it deletes.
    """
    fx = Effects(ctx.now())
    history: tuple[str, ...] = ()
    with session.no_autoflush:  # the old chain's rows go in the flush that adds the new one
        roster = await ctx.people.load(session)
        if wants_history(decision, case):
            found = await customer_history(session, case.channel, case.buyer_ref, fx.now, case.id)
            history = history_lines(found)
        else:
            history = await abuse.flag_lines(session, case)
    routed(ctx, fx, case, decision, roster, history)
    await session.flush()
    await fx.apply(session)
