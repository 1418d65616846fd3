"""Abuse flags: a buyer with too many anomalies of one kind is 潜在滥用权益.

The rule is config ([abuse] in warehouse.toml, default 3 of one kind in 180 days),
counted from the stored inspection results of the buyer (channel, buyer_ref) since
the window opened or risk last cleared the flag, whichever is later. The incident
that reaches the threshold flags the customer, in the transaction that records it;
routing then never auto-approves them (handlers/routing.py) and every card about
them says so. Risk clears a flag with a reason; both moves are audited.
"""

from __future__ import annotations

from collections import Counter
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from bot.events import Sender
from handlers import notify, views
from handlers.context import Ctx
from handlers.people import role_zh
from handlers.workflow import Actor, Refusal, audit
from storage.models import Case, Customer, Inspection, Member

FLAG_LABEL = "潜在滥用权益"
FLAGGED_LINE = f"⚠ {FLAG_LABEL}：该买家已被风控标记，不自动通过，请核实后处理"
CLEARERS = frozenset({"risk", "admin"})


async def customer_of(session: AsyncSession, case: Case) -> Customer | None:
    if not case.buyer_ref:
        return None
    found = await session.scalars(
        select(Customer).where(
            Customer.channel == case.channel, Customer.buyer_ref == case.buyer_ref
        )
    )
    return found.first()


def _counted(ctx: Ctx, customer: Customer | None, now: datetime) -> list[Any]:
    """Inside the window, and after the flag was last cleared (its incidents are spent)."""
    since = now - timedelta(days=ctx.settings.warehouse.abuse.window_days)
    where: list[Any] = [Inspection.at >= since]
    if customer is not None and customer.flag_cleared_at is not None:
        where.append(Inspection.at > customer.flag_cleared_at)
    return where


async def incidents(
    session: AsyncSession, ctx: Ctx, case: Case, customer: Customer | None, now: datetime
) -> dict[str, list[str]]:
    """The buyer's anomaly incidents in the window (or since the flag was cleared), per
    kind: the case ids, oldest first."""
    if not case.buyer_ref:
        return {}
    rows = await session.execute(
        select(Inspection.outcome, Inspection.case_id, Inspection.at, Inspection.id).where(
            Inspection.channel == case.channel,
            Inspection.buyer_ref == case.buyer_ref,
            Inspection.outcome.in_(sorted(ctx.settings.warehouse.abuse.kinds)),
            *_counted(ctx, customer, now),
        )
    )  # a buyer's few rows, ordered here: one index range per outcome comes out unordered
    found: dict[str, list[str]] = {}
    for outcome, case_id, _, _ in sorted(rows, key=lambda r: (r[2], r[3])):
        found.setdefault(outcome, []).append(case_id)
    return found


def incident_lines(found: dict[str, list[str]], days: int) -> tuple[str, ...]:
    """ "近 180 天验货异常：缺配件 3 次（RC-…、RC-…、RC-…）", one line per kind."""
    counts = Counter({k: len(v) for k, v in found.items()})
    return tuple(
        f"近 {days} 天验货异常：{views.INSPECTION_ZH.get(k, k)} {n} 次（{'、'.join(found[k])}）"
        for k, n in counts.most_common()
    )


async def after_incident(
    session: AsyncSession, ctx: Ctx, case: Case, outcome: str
) -> tuple[str, ...]:
    """After an anomaly was recorded for `case` (flushed): flag the buyer when this
    incident reaches the threshold. Returns the incident lines for risk's card."""
    rule = ctx.settings.warehouse.abuse
    now = ctx.now()
    customer = await customer_of(session, case)
    found = await incidents(session, ctx, case, customer, now)
    count = len(found.get(outcome, []))
    crossed = outcome in rule.kinds and count >= rule.threshold
    if customer is not None and not customer.flagged and crossed:
        label = views.INSPECTION_ZH.get(outcome, outcome)
        customer.flagged = True
        customer.flag_reason = f"{FLAG_LABEL}：{rule.window_days} 天内{label} {count} 次"
        session.add(
            audit(
                case.id,
                Actor("system", "system"),
                "flag_customer",
                now,
                case.status,
                case.status,
                why=customer.flag_reason,
                detail={"buyer": case.buyer_ref, "channel": case.channel, "cases": found[outcome]},
            )
        )
    return incident_lines(found, rule.window_days)


async def flag_lines(session: AsyncSession, case: Case) -> tuple[str, ...]:
    """The flag warning for any card about the case's buyer (empty when not flagged)."""
    customer = await customer_of(session, case)
    if customer is None or not customer.flagged:
        return ()
    return (f"⚠ {customer.flag_reason or FLAG_LABEL}（不自动通过，请核实后处理）",)


async def clear_flag(
    session: AsyncSession,
    ctx: Ctx,
    case_id: str,
    member: Member,
    reason: str,
    reply_to: Sender,
) -> Refusal | None:
    """Risk clears the flag of the buyer of `case_id`, with a reason (audited); later
    incidents count afresh. Returns the refusal (already told) when it may not."""
    actor = Actor.of(member)
    case = await session.get(Case, case_id)
    customer = await customer_of(session, case) if case is not None else None
    refusal: Refusal | None = None
    if not (CLEARERS & actor.roles):
        refusal = Refusal(f"您没有「{role_zh('risk')}」角色，不能解除风险标记")
    elif customer is None or not customer.flagged:
        refusal = Refusal("该买家没有风险标记，无需解除")
    elif not reason.strip():
        refusal = Refusal("解除标记需要填写原因")
    now = ctx.now()
    if refusal is not None or customer is None or case is None:
        why = refusal.reason if refusal else "未找到售后单"
        session.add(audit(case_id if case else None, actor, "refused:unflag", now, why=why))
        await notify.send_text(session, ctx, reply_to, why, case_id if case else None)
        return refusal or Refusal(why)
    before = customer.flag_reason
    customer.flagged, customer.flag_reason, customer.flag_cleared_at = False, "", now
    session.add(
        audit(
            case.id,
            actor,
            "unflag_customer",
            now,
            case.status,
            case.status,
            why=reason.strip(),
            detail={"buyer": case.buyer_ref, "channel": case.channel, "was": before},
        )
    )
    await notify.send_text(
        session,
        ctx,
        reply_to,
        f"已解除买家 {case.buyer_nick or case.buyer_ref} 的风险标记（原因：{reason.strip()}）",
        case.id,
    )
    return None
