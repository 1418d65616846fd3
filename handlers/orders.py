"""Order events (paid, cancelled) into the buyers' purchase history, in the writer's batch.

The writer's "order" kind (bot/writer.py) runs `apply_orders` on each batch in
its shared transaction: each event's idempotency key is claimed once (a repeat,
in the table or earlier in the batch, is answered `duplicate`), paid orders are
upserted and cancelled ones leave the history (storage/orders.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession

from bot.events import OrderEvent
from handlers.context import Ctx, naive_utc
from storage import intake_rows as rows
from storage import orders

KIND = "order"


@dataclass(frozen=True, slots=True)
class OrderResult:
    order_id: str
    duplicate: bool


async def apply_orders(
    session: AsyncSession, ctx: Ctx, events: Sequence[OrderEvent]
) -> list[OrderResult]:
    """Apply `events` in the caller's transaction; for an order named twice in the
    batch, the later event wins (paid, then cancelled: gone)."""
    keys = [e.key for e in events]
    known = await rows.known_keys(session, keys)
    fresh: dict[str, OrderEvent] = {}
    for event in events:
        if event.key not in known:
            fresh.setdefault(event.key, event)
    await rows.claim_keys(session, [(k, e.channel) for k, e in fresh.items()], ctx.now())
    last = {((e.channel, e.buyer_ref), e.order_id): e for e in fresh.values()}
    paid = [
        orders.OrderRow(
            channel=e.channel,
            buyer_ref=e.buyer_ref,
            order_id=e.order_id,
            amount_fen=e.amount_fen,
            ordered_at=naive_utc(e.occurred_at),
            nick=e.buyer_nick,
        )
        for e in last.values()
        if e.status == "paid"
    ]
    await orders.upsert(session, ctx.db, paid)
    await orders.remove(session, ctx.db, [k for k, e in last.items() if e.status == "cancelled"])
    return [OrderResult(e.order_id, fresh.get(e.key) is not e) for e in events]
