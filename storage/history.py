"""Customer purchase and return history, as the director-tier card needs it."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from storage.models import Case, Customer, CustomerOrder

WINDOW = timedelta(days=365)


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


async def customer_history(
    session: AsyncSession, channel: str, buyer_ref: str, now: datetime, exclude_case: str
) -> History:
    """Orders and spend over the last year, the first order ever, and earlier returns
    (all of them, and those in that year for the return rate)."""
    customer = (
        await session.scalars(
            select(Customer).where(Customer.channel == channel, Customer.buyer_ref == buyer_ref)
        )
    ).first()
    orders, spent, first = 0, 0, None
    since = now - WINDOW
    if customer is not None:
        row = (
            await session.execute(
                select(
                    func.count(CustomerOrder.id).filter(CustomerOrder.ordered_at >= since),
                    func.coalesce(
                        func.sum(CustomerOrder.amount_fen).filter(
                            CustomerOrder.ordered_at >= since
                        ),
                        0,
                    ),
                    func.min(CustomerOrder.ordered_at),  # the first order ever
                ).where(CustomerOrder.customer_id == customer.id)
            )
        ).one()
        orders, spent, first = int(row[0]), int(row[1]), row[2]
    returns = (
        await session.execute(
            select(
                func.count(Case.id),
                func.coalesce(func.sum(Case.amount_fen), 0),
                func.count(Case.id).filter(Case.created_at >= since),
            ).where(Case.channel == channel, Case.buyer_ref == buyer_ref, Case.id != exclude_case)
        )
    ).one()
    return History(
        orders=orders,
        spent_fen=spent,
        first_order=first,
        returns=int(returns[0]),
        returned_fen=int(returns[1]),
        flagged=bool(customer and customer.flagged),
        flag_reason=customer.flag_reason if customer else "",
        recent_returns=int(returns[2]),
    )
