"""The generic channel's order events: an OMS keeps the buyers' purchase history current.

`POST /webhooks/generic/orders`, signed exactly as the return webhook (same
headers, secret and replay window; bot/channels/generic.py), with a body of
one order event (docs/generic-channel.md "订单事件"):

    {"event_id": "oms-ord-0001", "shop": "main-store", "order_id": "SO20261101009",
     "buyer": {"ref": "buyer-8812", "nick": "喵星人"}, "status": "paid",
     "amount": "199.00", "currency": "CNY", "occurred_at": "2026-11-01T10:00:00+08:00"}

`status` is `paid` (the order counts in the history, `occurred_at` being when it
was paid) or `cancelled` (it leaves the history). Validated as strictly as a
return (generic_body.py: the same field checks and messages), deduplicated on
(shop, event_id), stored in the writer's batch, answered 202
`{"order_id": ..., "duplicate": ...}` once committed.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

from aiohttp import web

from bot import keys
from bot.appkeys import CTX, DISPATCH
from bot.channels import generic_body as body
from bot.channels.generic import answer, signed_body
from bot.events import OrderEvent
from bot.web.edge import cannot_store
from bot.writer import Closed

log = logging.getLogger(__name__)

ROUTE = "/webhooks/generic/orders"
STATUSES = ("paid", "cancelled")
FIELDS = frozenset(
    {"event_id", "shop", "order_id", "buyer", "status", "amount", "currency", "occurred_at"}
)

OnOrder = Callable[[OrderEvent], Awaitable[Any]]  # result: .order_id, .duplicate
INTAKE: web.AppKey[OnOrder] = web.AppKey("generic_order_intake")


def parse(raw: bytes, *, default_shop: str, now: datetime) -> OrderEvent:
    data = body.decode(raw)
    unknown = sorted(set(data) - FIELDS)
    if unknown:
        body._fail(f"unknown field {unknown[0]!r}")
    shop = body._text(data, "shop", 64) or default_shop
    status = body._choice(data, "status", STATUSES)
    currency = body._text(data, "currency", 8) or "CNY"
    if currency not in body.CURRENCIES:
        body._fail(f"currency {currency!r} is not supported; only CNY for now")
    buyer = body._object(data.get("buyer"), "buyer", body.BUYER_FIELDS)
    raw_amount = data.get("amount")
    if status == "cancelled" and raw_amount is None:
        amount = 0
    else:
        amount = body._yuan(raw_amount, "amount", allow_zero=True)
    return OrderEvent(
        key=keys.key(body.CHANNEL, shop, "order", body._required(data, "event_id", 128)),
        channel=body.CHANNEL,
        shop=shop,
        order_id=body._required(data, "order_id", 64),
        buyer_ref=body._required(buyer, "ref", 64, field="buyer.ref"),
        status=status,
        amount_fen=amount,
        occurred_at=body._occurred_at(data.get("occurred_at"), now),
        buyer_nick=body._text(buyer, "nick", 64, field="buyer.nick") or "",
    )


def setup(app: web.Application, on_order: OnOrder) -> None:
    """Mount `POST /webhooks/generic/orders`; `on_order(event)` stores it (the writer)."""
    app[INTAKE] = on_order
    app.router.add_post(ROUTE, receive)


async def receive(request: web.Request) -> web.Response:
    ctx = request.app[CTX]
    try:
        raw = await signed_body(request)
        event = parse(raw, default_shop=ctx.settings.channels.generic.shop, now=ctx.clock())
    except body.Rejected as exc:
        log.warning(
            "order event from %s refused (%d): %s", request.remote, exc.status, exc.message
        )
        return answer(exc.status, {"error": exc.message})
    try:
        if not request.app[DISPATCH].accepting:
            raise Closed("shutting down")
        result = await request.app[INTAKE](event)
    except Exception as exc:
        return cannot_store(exc, f"order event {event.key}")
    log.info(
        "order event %s (%s %s)%s",
        event.key,
        event.order_id,
        event.status,
        " (duplicate)" if result.duplicate else "",
    )
    return answer(202, {"order_id": result.order_id, "duplicate": result.duplicate})
