"""`POST /webhooks/shopify`: Shopify's return and refund webhooks, verified and applied.

Before anything is parsed or stored: the body is read up to
`server.max_body_bytes`; `X-Shopify-Shop-Domain` must name a configured shop and
`X-Shopify-Hmac-Sha256` must equal base64(HMAC-SHA256(client secret, raw body)),
compared in constant time (shopify.dev "verify deliveries"). Refusals are 401/4xx
with `{"error": …}` and store nothing.

Topics `returns/*` and `refunds/create` become `ReturnRequest`s keyed by shop and
`X-Shopify-Event-Id` (Shopify's own duplicate marker; a redelivery is dropped by
the intake's inbox); other topics are acknowledged and ignored. The payload's
`updated_at` (else `X-Shopify-Triggered-At`) is the channel version, so an
older delivery arriving after a newer one leaves the newer state. The answer (200)
goes once the event is committed (the group-commit writer), inside Shopify's 5 s.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from aiohttp import web

from bot import keys
from bot.appkeys import CTX
from bot.channels.generic_body import Rejected
from bot.channels.notices import Submit
from bot.channels.shops import ShopifyShop
from bot.channels.storable import storable
from bot.channels.values import id_str, listed, minor_from_decimal, utc_time
from bot.events import Item, ReturnRequest, time_version
from bot.web.body import BodyTooLarge, read_body
from bot.web.edge import cannot_store

log = logging.getLogger(__name__)

CHANNEL = "shopify"
ROUTE = "/webhooks/shopify"
HMAC_HEADER, TOPIC_HEADER = "X-Shopify-Hmac-Sha256", "X-Shopify-Topic"
SHOP_HEADER, EVENT_HEADER = "X-Shopify-Shop-Domain", "X-Shopify-Event-Id"
WEBHOOK_HEADER, TRIGGERED_HEADER = "X-Shopify-Webhook-Id", "X-Shopify-Triggered-At"
RETURN_STATUS = {
    "returns/request": "requested",
    "returns/approve": "requested",
    "returns/reopen": "requested",
    "returns/update": "requested",
    "returns/process": "updated",
    "returns/close": "updated",
    "returns/cancel": "cancelled",
    "returns/decline": "cancelled",
}
REFUND_TOPIC = "refunds/create"

SHOPS: web.AppKey[list[ShopifyShop]] = web.AppKey("shopify_shops")
INTAKE: web.AppKey[Submit] = web.AppKey("shopify_intake")


def signature(secret: str, body: bytes) -> str:
    return base64.b64encode(hmac.new(secret.encode(), body, hashlib.sha256).digest()).decode()


def verify(shops: list[ShopifyShop], headers: Mapping[str, str], body: bytes) -> ShopifyShop:
    domain = headers.get(SHOP_HEADER, "").strip().lower()
    given = headers.get(HMAC_HEADER, "").strip()
    if not domain or not given:
        raise Rejected(401, f"missing {SHOP_HEADER} or {HMAC_HEADER} header")
    shop = next((s for s in shops if s.shop_domain.lower() == domain), None)
    if shop is None:
        raise Rejected(401, f"{SHOP_HEADER} is not a configured shop")
    if not given.isascii() or not hmac.compare_digest(given, signature(shop.secret, body)):
        raise Rejected(401, f"{HMAC_HEADER} does not match the body")
    return shop


def _table(value: object) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _decode(raw: bytes) -> dict[str, Any]:
    try:
        body = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise Rejected(400, "body is not valid JSON") from None
    if not isinstance(body, dict):
        raise Rejected(400, "body must be a JSON object")
    return body


def _version(body: dict[str, Any], headers: Mapping[str, str], now: datetime) -> datetime:
    for value in (body.get("updated_at"), body.get("processed_at"), headers.get(TRIGGERED_HEADER)):
        if value:
            return utc_time(value, "updated_at")
    return now


def _line_items(body: dict[str, Any]) -> tuple[tuple[Item, ...], str]:
    items, reasons = [], []
    for n, line in enumerate(listed(body.get("return_line_items"), "return_line_items")):
        if not isinstance(line, dict):
            raise ValueError(f"return_line_items[{n}] must be an object")
        sold = _table(_table(line.get("fulfillment_line_item")).get("line_item"))
        qty = line.get("quantity")
        if not isinstance(qty, int) or isinstance(qty, bool) or qty < 1:
            raise ValueError(f"return_line_items[{n}].quantity must be a positive integer")
        price = sold.get("price")
        if price is None:
            price = _table(_table(sold.get("price_set")).get("shop_money")).get("amount")
        unit = minor_from_decimal(price, f"return_line_items[{n}] line_item.price")
        code = sold.get("sku") or sold.get("id") or line.get("id")
        name = str(sold.get("title") or sold.get("name") or "Shopify item")[:128]
        items.append(Item(id_str(code, f"return_line_items[{n}] sku")[:64], name, qty, unit))
        reasons += [
            str(line.get(k)) for k in ("return_reason", "return_reason_note") if line.get(k)
        ]
    if not items:
        raise ValueError("return_line_items must list at least one item")
    return tuple(items), "; ".join(reasons)


def to_request(
    topic: str, body: dict[str, Any], headers: Mapping[str, str], shop: str, now: datetime
) -> ReturnRequest | None:
    """The neutral event of a delivery, or None for a topic we do not follow."""
    event_id = headers.get(EVENT_HEADER) or headers.get(WEBHOOK_HEADER) or ""
    if topic not in RETURN_STATUS and topic != REFUND_TOPIC:
        return None
    if not event_id:
        raise Rejected(400, f"missing {EVENT_HEADER} header")
    try:
        moment = _version(body, headers, now)
        if topic == REFUND_TOPIC:
            linked = _table(body.get("return"))
            external = id_str(linked.get("id") or body.get("id"), "return.id / id")
            order_id = id_str(body.get("order_id"), "order_id")
            amount = sum(
                minor_from_decimal(t.get("amount"), "transactions[].amount")
                for t in listed(body.get("transactions"), "transactions")
                if isinstance(t, dict) and t.get("kind") == "refund"
            )
            items: tuple[Item, ...] = ()
            kind, status, reason = "return_refund" if linked else "refund_only", "refunded", ""
        else:
            external = id_str(body.get("id"), "id")
            order = _table(body.get("order"))
            order_id = id_str(order.get("id") or body.get("order_id"), "order.id")
            status = RETURN_STATUS[topic]
            # A request carries what is returned; a cancel or close need not (the case
            # keeps what it has), and a first delivery of one makes a closed case.
            items, reason = _line_items(body) if status == "requested" else ((), "")
            amount = sum(i.qty * i.unit_price_fen for i in items)
            exchange = bool(body.get("exchange_line_items"))
            kind = "exchange" if exchange else "return_refund"
    except ValueError as exc:
        raise Rejected(422, str(exc)) from None
    currency = str(body.get("currency") or "CNY")[:3]
    event = ReturnRequest(
        key=keys.key(CHANNEL, shop, event_id),
        channel=CHANNEL,
        shop=shop,
        external_id=external,
        order_id=order_id,
        kind=kind,
        status=status,
        amount_fen=amount,
        version=time_version(moment),
        occurred_at=moment,
        currency=currency,
        reason_text=reason[:2000],
        items=items,
    )
    try:
        return storable(event)
    except ValueError as exc:
        raise Rejected(422, str(exc)) from None


def setup(app: web.Application, shops: list[ShopifyShop], intake: Submit) -> None:
    app[SHOPS] = shops
    app[INTAKE] = intake
    app.router.add_post(ROUTE, receive)


async def receive(request: web.Request) -> web.Response:
    """Verify, map, apply; 200 once committed."""
    ctx = request.app[CTX]
    topic = request.headers.get(TOPIC_HEADER, "")
    try:
        try:
            raw = await read_body(request, ctx.settings.server.max_body_bytes)
        except BodyTooLarge as exc:
            raise Rejected(413, str(exc)) from None
        shop = verify(request.app[SHOPS], request.headers, raw)
        event = to_request(topic, _decode(raw), request.headers, shop.shop_domain, ctx.clock())
    except Rejected as exc:
        log.warning("shopify %s from %s refused (%d): %s", topic, request.remote, exc.status, exc)
        return web.json_response({"error": exc.message}, status=exc.status)
    if event is None:
        log.info("shopify topic %r from %s acknowledged, not followed", topic, shop.shop_domain)
        return web.json_response({"ok": True, "ignored": topic})
    try:
        result = await request.app[INTAKE](event, ctx)
    except Exception as exc:
        return cannot_store(exc, f"shopify {event.key}")
    if result.refused:
        log.warning("shopify %s refused (409): %s", event.key, result.refused)
        return web.json_response({"error": result.refused}, status=409)
    log.info("shopify %s (%s %s) -> case %s", event.key, topic, event.external_id, result.case_id)
    return web.json_response(
        {"ok": True, "case_id": result.case_id, "duplicate": result.duplicate}
    )
