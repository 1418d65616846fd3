"""The dashboard's figures beyond /统计's KPIs (handlers/reports.py), each one SQL query.

Same rules as reports.py: a `Period` and `Filters`, naive UTC, the same SQL on
SQLite and PostgreSQL (only date and duration arithmetic differ by dialect), an
index for every query. Percentiles are read with ORDER BY … LIMIT 1 OFFSET k
over the period's rows, which both engines run without a percentile function.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, and_, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from handlers.reports import Filters, Period, filtered, seconds_between, within
from storage.models import ApprovalStep, Case, CaseItem, Customer, Member

# Stages and where their two ends are stamped on the case.
STAGES = (
    ("review", "审核", Case.created_at, Case.decided_at),
    ("return", "退货在途", Case.decided_at, Case.received_at),
    ("refund", "验货到退款", Case.received_at, Case.refunded_at),
)
TREND_DAYS = 30
EVERYTHING = Filters()  # no channel or shop filter


@dataclass(frozen=True)
class Tiles:
    new: int
    pending_review: int
    awaiting_return: int
    awaiting_inspection: int
    on_hold: int
    refund_pending_fen: int
    refunded_fen: int
    auto_share: float | None  # of the period's new cases, auto-approved


@dataclass(frozen=True)
class StageTime:
    stage: str
    label: str
    count: int
    p50_hours: float | None
    p90_hours: float | None


async def tiles(session: AsyncSession, p: Period, filters: Filters = EVERYTHING) -> Tiles:
    """The KPI tiles: the period's new cases and refunds, and what waits now."""
    status = Case.status
    waiting = select(
        func.count(Case.id).filter(status == "pending_approval"),
        func.count(Case.id).filter(status.in_(("awaiting_return", "in_transit"))),
        func.count(Case.id).filter(status == "received"),
        func.count(Case.id).filter(status == "on_hold"),
        func.coalesce(
            func.sum(func.coalesce(Case.refund_fen, Case.amount_fen)).filter(
                status == "refund_pending"
            ),
            0,
        ),
    ).where(status.in_(("pending_approval", "awaiting_return", "in_transit", "received",
                        "on_hold", "refund_pending")))  # fmt: skip
    review, back, inspect, hold, pending = (
        await session.execute(filtered(waiting, filters))
    ).one()
    created = select(func.count(Case.id), func.count(Case.id).filter(Case.tier == "auto")).where(
        within(Case.created_at, p)
    )
    new, auto = (await session.execute(filtered(created, filters))).one()
    released = select(func.coalesce(func.sum(Case.refund_fen), 0)).where(
        within(Case.refunded_at, p)
    )
    refunded = int(await session.scalar(filtered(released, filters)) or 0)
    return Tiles(
        new=int(new),
        pending_review=int(review),
        awaiting_return=int(back),
        awaiting_inspection=int(inspect),
        on_hold=int(hold),
        refund_pending_fen=int(pending),
        refunded_fen=refunded,
        auto_share=int(auto) / int(new) if new else None,
    )


async def reasons(
    session: AsyncSession, p: Period, filters: Filters = EVERYTHING
) -> list[tuple[str, int]]:
    """Every reason code of the period's new cases with its count, commonest first."""
    n = func.count(Case.id).label("n")
    query = filtered(select(Case.reason_code, n).where(within(Case.created_at, p)), filters)
    rows = await session.execute(
        query.group_by(Case.reason_code).order_by(n.desc(), Case.reason_code)
    )
    return [(code or "", int(count)) for code, count in rows]


def first_level(by_code: list[tuple[str, int]]) -> list[tuple[str, int]]:
    """`quality.defect` and `quality.broken` both count under `quality`."""
    totals: dict[str, int] = {}
    for code, count in by_code:
        head = code.split(".", 1)[0]
        totals[head] = totals.get(head, 0) + count
    return sorted(totals.items(), key=lambda kv: (-kv[1], kv[0]))


async def reasons_by_sku(
    session: AsyncSession, p: Period, filters: Filters = EVERYTHING, limit: int = 10
) -> list[tuple[str, str, str, int]]:
    """(sku, name, reason code, cases) of the period, commonest first."""
    n = func.count(func.distinct(Case.id)).label("n")
    query = (
        select(CaseItem.sku, func.max(CaseItem.name), Case.reason_code, n)
        .join(Case, Case.id == CaseItem.case_id)
        .where(within(Case.created_at, p))
    )
    query = filtered(query, filters).group_by(CaseItem.sku, Case.reason_code)
    rows = await session.execute(query.order_by(n.desc(), CaseItem.sku).limit(limit))
    return [(sku, name or "", code or "", int(count)) for sku, name, code, count in rows]


async def stage_times(
    session: AsyncSession, p: Period, filters: Filters = EVERYTHING
) -> list[StageTime]:
    """Median and 90th percentile hours per stage, of the stages that ended in the period."""
    found = []
    for stage, label, start, end in STAGES:
        span = seconds_between(session, end, start).label("s")
        base = filtered(select(span).where(start.is_not(None), within(end, p)), filters).subquery()
        count = int(await session.scalar(select(func.count()).select_from(base)) or 0)
        found.append(
            StageTime(
                stage,
                label,
                count,
                await _rank(session, base, count, 0.5),
                await _rank(session, base, count, 0.9),
            )
        )
    return found


async def _rank(session: AsyncSession, rows: Any, count: int, fraction: float) -> float | None:
    if count == 0:
        return None
    k = max(0, math.ceil(fraction * count) - 1)  # nearest rank, 0-based
    value = await session.scalar(select(rows.c.s).order_by(rows.c.s).limit(1).offset(k))
    return round(float(value) / 3600, 2) if value is not None else None  # julianday is float


async def breaches_by_assignee(
    session: AsyncSession, p: Period, now: datetime, filters: Filters = EVERYTHING
) -> list[tuple[str, str, int]]:
    """(role, member, late steps) for approval steps due in the period decided late or
    still overdue, most first."""
    late = and_(
        ApprovalStep.due_at >= p.start,
        ApprovalStep.due_at < min(p.end, now),
        or_(
            ApprovalStep.decided_at > ApprovalStep.due_at,
            and_(ApprovalStep.decided_at.is_(None), ApprovalStep.state == "pending"),
        ),
    )
    n = func.count(ApprovalStep.id).label("n")
    query = (
        select(ApprovalStep.role, func.coalesce(Member.name, ""), n)
        .join(Case, Case.id == ApprovalStep.case_id)
        .outerjoin(
            Member, Member.id == func.coalesce(ApprovalStep.actor_id, ApprovalStep.assignee_id)
        )
        .where(late)
    )
    query = filtered(query, filters).group_by(ApprovalStep.role, Member.name)
    rows = await session.execute(query.order_by(n.desc(), ApprovalStep.role))
    return [(role, name or "", int(count)) for role, name, count in rows]


async def flagged_buyers(
    session: AsyncSession, filters: Filters = EVERYTHING, limit: int = 20
) -> list[tuple[str, str, str, str]]:
    """(channel, buyer ref, nick, why) of flagged buyers."""
    query = select(Customer.channel, Customer.buyer_ref, Customer.nick, Customer.flag_reason)
    query = query.where(Customer.flagged.is_(True))
    if filters.channel:
        query = query.where(Customer.channel == filters.channel)
    rows = await session.execute(query.order_by(Customer.channel, Customer.buyer_ref).limit(limit))
    return [(c, r, n or "", why or "") for c, r, n, why in rows]


def _local_day(session: AsyncSession, column: Any, offset_hours: float) -> ColumnElement[Any]:
    """The local calendar day of a stored UTC time, as 'YYYY-MM-DD' text on both engines."""
    if session.get_bind().dialect.name == "sqlite":
        return func.date(column, f"{offset_hours:+g} hours")
    shifted = column + timedelta(hours=offset_hours)
    return func.to_char(shifted, "YYYY-MM-DD")


async def trend(
    session: AsyncSession, end: datetime, offset_hours: float, filters: Filters = EVERYTHING
) -> list[tuple[str, int, int]]:
    """(local day, new cases, refunded cases) for each day of the TREND_DAYS up to `end`,
    days without any included as zeros, so the line is drawn over the whole month."""
    start = end - timedelta(days=TREND_DAYS)
    out: dict[str, list[int]] = {}
    for index, column in enumerate((Case.created_at, Case.refunded_at)):
        day = _local_day(session, column, offset_hours).label("day")
        query = select(day, func.count(Case.id)).where(column >= start, column < end)
        for d, n in await session.execute(filtered(query, filters).group_by(day)):
            out.setdefault(str(d), [0, 0])[index] = int(n)
    first = (start + timedelta(hours=offset_hours)).date()
    days = [(first + timedelta(days=i)).isoformat() for i in range(TREND_DAYS + 1)]
    return [(d, *out.get(d, [0, 0])) for d in days]  # type: ignore[misc]
