"""Customer purchase and return history, as the director-tier card needs it: the last
180 days of orders and returns (the period after-sales teams judge a buyer on), the
first order ever, and every earlier return."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from storage.models import Case, Customer, CustomerOrder, DisputeEvent, Inspection
from storage.sql_hints import unindexed

WINDOW = timedelta(days=180)  # the period the card and the abuse rule look back on


@dataclass(frozen=True, slots=True)
class History:
    orders: int
    spent_fen: int
    first_order: datetime | None
    returns: int  # every earlier return of this buyer
    returned_fen: int
    flagged: bool
    flag_reason: str
    recent_returns: int = 0  # those inside WINDOW, the period `orders` counts
    anomalies: tuple[tuple[str, int], ...] = ()  # inspection findings in WINDOW, by kind
    disputes: int = 0  # dispute outcomes recorded on their cases in WINDOW


Buyer = tuple[str, str]  # channel, buyer_ref


async def customer_history(
    session: AsyncSession, channel: str, buyer_ref: str, now: datetime, exclude_case: str
) -> History:
    """Orders and spend over the last WINDOW, the first order ever, and earlier returns
    (all of them, and those in the window for the return rate)."""
    found = await histories(session, [(channel, buyer_ref)], now, exclude=(exclude_case,))
    return found[(channel, buyer_ref)]


async def histories(
    session: AsyncSession, buyers: Iterable[Buyer], now: datetime, exclude: Iterable[str] = ()
) -> dict[Buyer, History]:
    """`customer_history` for many buyers in three grouped queries (the customers, their
    orders, their returns), leaving out the cases in `exclude`."""
    wanted = set(buyers)
    if not wanted:
        return {}
    channels, refs = {b[0] for b in wanted}, {b[1] for b in wanted}
    customers = {
        (c.channel, c.buyer_ref): c
        for c in await session.scalars(
            select(Customer).where(Customer.channel.in_(channels), Customer.buyer_ref.in_(refs))
        )
        if (c.channel, c.buyer_ref) in wanted
    }
    since = now - WINDOW
    orders: dict[int, tuple[int, int, datetime | None]] = {}
    if customers:
        rows = await session.execute(
            select(
                CustomerOrder.customer_id,
                func.count(CustomerOrder.id).filter(CustomerOrder.ordered_at >= since),
                func.coalesce(
                    func.sum(CustomerOrder.amount_fen).filter(CustomerOrder.ordered_at >= since),
                    0,
                ),
                func.min(CustomerOrder.ordered_at),  # the first order ever
            )
            .where(CustomerOrder.customer_id.in_([c.id for c in customers.values()]))
            .group_by(CustomerOrder.customer_id)
        )
        orders = {r[0]: (int(r[1]), int(r[2]), r[3]) for r in rows}
    returns: dict[Buyer, tuple[int, int, int]] = {}
    returns_query = (
        select(
            Case.channel,
            Case.buyer_ref,
            func.count(Case.id),
            func.coalesce(func.sum(Case.amount_fen), 0),
            func.count(Case.id).filter(Case.created_at >= since),
        )
        .where(Case.channel.in_(channels), Case.buyer_ref.in_(refs), Case.id.not_in(list(exclude)))
        .group_by(Case.channel, Case.buyer_ref)
    )
    for row in await session.execute(returns_query):
        returns[(row[0], row[1])] = (int(row[2]), int(row[3]), int(row[4]))
    anomalies = await _anomalies(session, channels, refs, wanted, since)
    disputes = await _disputes(session, channels, refs, wanted, since)
    found = {}
    for buyer in wanted:
        customer = customers.get(buyer)
        spent = orders.get(customer.id, (0, 0, None)) if customer is not None else (0, 0, None)
        back = returns.get(buyer, (0, 0, 0))
        found[buyer] = History(
            orders=spent[0],
            spent_fen=spent[1],
            first_order=spent[2],
            returns=back[0],
            returned_fen=back[1],
            flagged=bool(customer and customer.flagged),
            flag_reason=customer.flag_reason if customer else "",
            recent_returns=back[2],
            anomalies=tuple(sorted(anomalies.get(buyer, {}).items(), key=lambda kv: -kv[1])),
            disputes=disputes.get(buyer, 0),
        )
    return found


async def _anomalies(
    session: AsyncSession, channels: set[str], refs: set[str], wanted: set[Buyer], since: datetime
) -> dict[Buyer, dict[str, int]]:
    """Inspection findings other than 完好, per buyer and kind, in the window."""
    rows = await session.execute(
        select(Inspection.channel, Inspection.buyer_ref, Inspection.outcome, func.count())
        .where(
            Inspection.channel.in_(channels),
            Inspection.buyer_ref.in_(refs),
            Inspection.outcome != "ok",
            Inspection.at >= since,
        )
        .group_by(Inspection.channel, Inspection.buyer_ref, Inspection.outcome)
    )
    found: dict[Buyer, dict[str, int]] = {}
    for channel, ref, outcome, n in rows:
        if (channel, ref) in wanted:
            found.setdefault((channel, ref), {})[outcome] = int(n)
    return found


async def _disputes(
    session: AsyncSession, channels: set[str], refs: set[str], wanted: set[Buyer], since: datetime
) -> dict[Buyer, int]:
    """Dispute outcomes recorded on the buyer's cases in the window."""
    rows = await session.execute(
        select(Case.channel, Case.buyer_ref, func.count(DisputeEvent.id))
        .join(DisputeEvent, DisputeEvent.case_id == Case.id)
        .where(
            Case.channel.in_(channels),
            Case.buyer_ref.in_(refs),
            # Walk the buyer's cases (ix_case_buyer), then each case's disputes
            # (ix_dispute_case): not every dispute of the window.
            unindexed(DisputeEvent.kind.expression) == "outcome",
            unindexed(DisputeEvent.at.expression) >= since,
        )
        .group_by(Case.channel, Case.buyer_ref)
    )
    return {(c, r): int(n) for c, r, n in rows if (c, r) in wanted}


def with_returns(history: History, count: int, amount_fen: int) -> History:
    """`history` with `count` more returns worth `amount_fen`, made just now (so inside
    the window): the cases earlier in the same batch, not stored yet when it was read."""
    return replace(
        history,
        returns=history.returns + count,
        returned_fen=history.returned_fen + amount_fen,
        recent_returns=history.recent_returns + count,
    )
