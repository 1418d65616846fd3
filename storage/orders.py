"""The buyers' purchase history: orders imported from a CSV or pushed by an OMS.

The customer history on a director's card (storage/history.py) counts a buyer's
orders and spend; a shop that starts fresh, or one whose orders never pass
through a channel we read, fills it with `returnhub import-orders` or the generic
channel's order events. Both land here, in batches of Core statements: the buyers
are stored if new (`ON CONFLICT DO NOTHING`, then one lookup for their ids) and
each order is upserted on (customer, order_id), so importing a file twice, or an
OMS repeating an event, changes nothing the second time, and a corrected amount
or time replaces the old one.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import and_, delete, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from storage.db import Database, dialect_insert
from storage.models import Customer, CustomerOrder

Buyer = tuple[str, str]  # channel, buyer_ref


@dataclass(frozen=True, slots=True)
class OrderRow:
    channel: str
    buyer_ref: str
    order_id: str
    amount_fen: int
    ordered_at: datetime  # naive UTC
    nick: str = ""

    @property
    def buyer(self) -> Buyer:
        return (self.channel, self.buyer_ref)


@dataclass(frozen=True, slots=True)
class Outcome:
    """What a batch did: orders new to us, changed (amount or time), already as given."""

    new: int = 0
    changed: int = 0
    same: int = 0

    def __add__(self, other: Outcome) -> Outcome:
        return Outcome(self.new + other.new, self.changed + other.changed, self.same + other.same)


async def customer_ids(
    session: AsyncSession, db: Database, buyers: dict[Buyer, str], *, create: bool = True
) -> dict[Buyer, int]:
    """The ids of these buyers (channel, ref) -> nick; new ones are stored unless
    `create` is false (a dry run), and then left out."""
    if not buyers:
        return {}
    if create:
        table = Customer.__table__
        rows = [
            {"channel": c, "buyer_ref": r, "nick": nick, "flagged": False, "flag_reason": ""}
            for (c, r), nick in buyers.items()
        ]
        stmt = dialect_insert(db, table).on_conflict_do_nothing(
            index_elements=[table.c.channel, table.c.buyer_ref]
        )
        await session.execute(stmt, rows)
    found = await session.execute(
        select(Customer.channel, Customer.buyer_ref, Customer.id).where(
            Customer.channel.in_({b[0] for b in buyers}),
            Customer.buyer_ref.in_({b[1] for b in buyers}),
        )
    )
    return {(c, r): i for c, r, i in found if (c, r) in buyers}


async def _stored(
    session: AsyncSession, pairs: Iterable[tuple[int, str]]
) -> dict[tuple[int, str], tuple[int, datetime]]:
    wanted = set(pairs)
    if not wanted:
        return {}
    rows = await session.execute(
        select(
            CustomerOrder.customer_id,
            CustomerOrder.order_id,
            CustomerOrder.amount_fen,
            CustomerOrder.ordered_at,
        ).where(
            CustomerOrder.customer_id.in_({p[0] for p in wanted}),
            CustomerOrder.order_id.in_({p[1] for p in wanted}),
        )
    )
    return {(c, o): (a, t) for c, o, a, t in rows if (c, o) in wanted}


def _buyers(orders: Sequence[OrderRow]) -> dict[Buyer, str]:
    buyers: dict[Buyer, str] = {}
    for order in orders:
        if order.nick or order.buyer not in buyers:
            buyers[order.buyer] = order.nick
    return buyers


async def upsert(
    session: AsyncSession, db: Database, orders: Sequence[OrderRow], *, dry_run: bool = False
) -> Outcome:
    """Store `orders` (the last one wins for an order listed twice); a dry run only
    counts what storing them would do."""
    latest = {(o.buyer, o.order_id): o for o in orders}
    ids = await customer_ids(session, db, _buyers(orders), create=not dry_run)
    stored = await _stored(session, ((ids[b], order) for b, order in latest if b in ids))
    new = changed = same = 0
    rows = []
    for (buyer, order_id), order in latest.items():
        customer = ids.get(buyer)
        before = stored.get((customer, order_id)) if customer is not None else None
        if before is None:
            new += 1
        elif before == (order.amount_fen, order.ordered_at):
            same += 1
            continue
        else:
            changed += 1
        if customer is not None:
            rows.append(
                {
                    "customer_id": customer,
                    "order_id": order_id,
                    "amount_fen": order.amount_fen,
                    "ordered_at": order.ordered_at,
                }
            )
    if rows and not dry_run:
        table = CustomerOrder.__table__
        stmt = dialect_insert(db, table)
        stmt = stmt.on_conflict_do_update(
            index_elements=[table.c.customer_id, table.c.order_id],
            set_={"amount_fen": stmt.excluded.amount_fen, "ordered_at": stmt.excluded.ordered_at},
        )
        await session.execute(stmt, rows)
    return Outcome(new, changed, same)


async def remove(session: AsyncSession, db: Database, orders: Sequence[tuple[Buyer, str]]) -> int:
    """Drop cancelled orders ((channel, ref), order_id) from the history; how many were there."""
    ids = await customer_ids(session, db, {b: "" for b, _ in orders}, create=False)
    pairs = [(ids[b], o) for b, o in orders if b in ids]
    if not pairs:
        return 0
    match = (and_(CustomerOrder.customer_id == c, CustomerOrder.order_id == o) for c, o in pairs)
    result = await session.execute(delete(CustomerOrder).where(or_(*match)))
    return int(result.rowcount or 0)  # type: ignore[attr-defined]
