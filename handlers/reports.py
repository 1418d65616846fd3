"""KPIs over a period: what /统计 answers, and what the dashboard will show.

Plain async functions over a session, a `Period` and `Filters`, each one SQL query
that runs the same on SQLite and PostgreSQL (only the duration arithmetic differs by
dialect) and is served by an index (tests/unit/test_query_plans.py). Times are naive
UTC; a period starts at local midnight of the configured zone.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from typing import Any, TypeVar
from zoneinfo import ZoneInfo

from sqlalchemy import ColumnElement, Select, and_, extract, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from handlers.workflow import OPEN
from storage.models import ApprovalStep, Case, DisputeEvent

PERIODS = {"今天": "today", "today": "today", "本周": "week", "week": "week"}
PERIODS |= {"本月": "month", "month": "month", "昨天": "yesterday", "yesterday": "yesterday"}
PERIOD_ZH = {"today": "今天", "week": "本周", "month": "本月", "yesterday": "昨天"}
TOP_REASONS = 5
Q = TypeVar("Q", bound="Select[*tuple[Any, ...]]")


@dataclass(frozen=True)
class Period:
    name: str  # today | week | month | yesterday
    start: datetime  # naive UTC, inclusive
    end: datetime  # naive UTC, exclusive (now, for the period in progress)


@dataclass(frozen=True)
class Filters:
    channel: str | None = None
    shop: str | None = None


@dataclass(frozen=True)
class Refunds:
    count: int
    amount_fen: int
    avg_hours: float | None  # request to refund, for the cases refunded in the period


@dataclass(frozen=True)
class Kpis:
    period: Period
    new: int
    pending: dict[str, int] = field(default_factory=dict)  # open status -> cases now
    refunds: Refunds = Refunds(0, 0, None)
    sla_breaches: int = 0
    reasons: list[tuple[str, int]] = field(default_factory=list)  # two-level code, count
    disputes: list[tuple[str, str, int]] = field(default_factory=list)  # scenario, outcome
    scripts: list[tuple[str, int]] = field(default_factory=list)  # scenario, pulled


def period(name: str, now: datetime, zone: ZoneInfo) -> Period:
    """`today` / `week` (from Monday) / `month` up to `now` (naive UTC), local midnights;
    `yesterday` is the whole previous local day (what the daily digest reports)."""
    local = now.replace(tzinfo=ZoneInfo("UTC")).astimezone(zone)
    day = local.date()
    if name == "week":
        day -= timedelta(days=day.weekday())
    elif name == "month":
        day = day.replace(day=1)
    elif name == "yesterday":
        return Period(name, _midnight(day - timedelta(days=1), zone), _midnight(day, zone))
    return Period(name, _midnight(day, zone), now)


def _midnight(day: date, zone: ZoneInfo) -> datetime:
    """Naive UTC of local midnight starting `day`."""
    return datetime.combine(day, time(), zone).astimezone(ZoneInfo("UTC")).replace(tzinfo=None)


def filtered(query: Q, filters: Filters) -> Q:
    if filters.channel:
        query = query.where(Case.channel == filters.channel)
    if filters.shop:
        query = query.where(Case.shop == filters.shop)
    return query


def within(column: Any, p: Period) -> ColumnElement[bool]:
    return and_(column >= p.start, column < p.end)


async def new_cases(session: AsyncSession, p: Period, filters: Filters = Filters()) -> int:
    query = filtered(select(func.count(Case.id)).where(within(Case.created_at, p)), filters)
    return int(await session.scalar(query) or 0)


async def pending_by_stage(session: AsyncSession, filters: Filters = Filters()) -> dict[str, int]:
    """Open cases now, by status (the stage they wait in)."""
    query = select(Case.status, func.count(Case.id)).where(Case.status.in_(sorted(OPEN)))
    rows = await session.execute(filtered(query, filters).group_by(Case.status))
    return {status: int(n) for status, n in rows}


def seconds_between(session: AsyncSession, later: Any, earlier: Any) -> ColumnElement[Any]:
    if session.get_bind().dialect.name == "sqlite":
        return (func.julianday(later) - func.julianday(earlier)) * 86400.0
    return extract("epoch", later - earlier)


async def refunds(session: AsyncSession, p: Period, filters: Filters = Filters()) -> Refunds:
    """Cases refunded in the period: how many, how much, and how long they took."""
    query = select(
        func.count(Case.id),
        func.coalesce(func.sum(Case.refund_fen), 0),
        func.avg(seconds_between(session, Case.refunded_at, Case.created_at)),
    ).where(within(Case.refunded_at, p))
    count, amount, seconds = (await session.execute(filtered(query, filters))).one()
    hours = float(seconds) / 3600 if seconds is not None else None
    return Refunds(int(count), int(amount), hours)


async def sla_breaches(
    session: AsyncSession, p: Period, now: datetime, filters: Filters = Filters()
) -> int:
    """Approval steps due in the period that were decided late or are still overdue."""
    late = or_(
        ApprovalStep.decided_at > ApprovalStep.due_at,
        and_(ApprovalStep.decided_at.is_(None), ApprovalStep.state == "pending"),
    )
    query = (
        select(func.count(ApprovalStep.id))
        .join(Case, Case.id == ApprovalStep.case_id)
        .where(ApprovalStep.due_at >= p.start, ApprovalStep.due_at < min(p.end, now), late)
    )
    return int(await session.scalar(filtered(query, filters)) or 0)


async def top_reasons(
    session: AsyncSession, p: Period, filters: Filters = Filters(), limit: int = TOP_REASONS
) -> list[tuple[str, int]]:
    """The commonest return reasons (two-level codes) of the period's new cases."""
    n = func.count(Case.id).label("n")
    query = select(Case.reason_code, n).where(within(Case.created_at, p))
    query = filtered(query, filters).group_by(Case.reason_code)
    rows = await session.execute(query.order_by(n.desc(), Case.reason_code).limit(limit))
    return [(code or "", int(count)) for code, count in rows]


async def _disputes(
    session: AsyncSession, p: Period, filters: Filters, kind: str, *columns: Any
) -> list[tuple[Any, ...]]:
    query = select(*columns, func.count(DisputeEvent.id)).where(
        DisputeEvent.kind == kind, within(DisputeEvent.at, p)
    )
    if filters.channel or filters.shop:
        query = filtered(query.join(Case, Case.id == DisputeEvent.case_id), filters)
    rows = await session.execute(query.group_by(*columns).order_by(*columns))
    return [tuple(row) for row in rows]


async def disputes_by_outcome(
    session: AsyncSession, p: Period, filters: Filters = Filters()
) -> list[tuple[str, str, int]]:
    """Outcomes recorded in the period, by scenario and outcome."""
    rows = await _disputes(
        session, p, filters, "outcome", DisputeEvent.scenario, DisputeEvent.outcome
    )
    return [(str(s), str(o), int(n)) for s, o, n in rows]


async def scripts_pulled(
    session: AsyncSession, p: Period, filters: Filters = Filters()
) -> list[tuple[str, int]]:
    rows = await _disputes(session, p, filters, "script", DisputeEvent.scenario)
    return [(str(s), int(n)) for s, n in rows]


async def kpis(
    session: AsyncSession, p: Period, now: datetime, filters: Filters = Filters()
) -> Kpis:
    """Every figure /统计 shows, for one period."""
    return Kpis(
        period=p,
        new=await new_cases(session, p, filters),
        pending=await pending_by_stage(session, filters),
        refunds=await refunds(session, p, filters),
        sla_breaches=await sla_breaches(session, p, now, filters),
        reasons=await top_reasons(session, p, filters),
        disputes=await disputes_by_outcome(session, p, filters),
        scripts=await scripts_pulled(session, p, filters),
    )
