"""The last gate between a marketplace's detail and the database: what the mappers
(Shopify, Taobao, JD, Douyin) built must fit the columns it goes to.

The generic channel's parser (bot/channels/generic_body.py) checks every field of
a body we define; a marketplace's payload is theirs, read leniently, and a value
that passed a mapper could still fail at commit: a NUL (PostgreSQL refuses it), a
lone surrogate (no UTF-8 for it), an id longer than its column, a quantity or an
amount past BIGINT. A commit failure is a 500 and a retry that fails forever; here
it is a ValueError naming the field, which each channel turns into its refusal.

Identifiers (ids, waybills, SKUs) are refused when they do not fit: cutting one
would make it name something else. Display text (nick, item name, carrier,
reason) is cleaned and cut, since a buyer's odd nickname should not cost a refund.
"""

from __future__ import annotations

import dataclasses
import re

from bot.events import Item, ReturnRequest
from bot.web.body import unsafe_text

MAX_FEN = 10**13 - 1  # parse_yuan's bound: 11 digits of yuan
MAX_QTY = 100_000
MAX_URL = 2048
_CURRENCY = re.compile(r"[A-Z]{3}")


def _id(value: str, name: str, limit: int = 64) -> str:
    if unsafe_text(value) or len(value) > limit:
        raise ValueError(f"{name} must be at most {limit} printable characters: {value[:40]!r}")
    return value


def _optional_id(value: str | None, name: str) -> str | None:
    return None if value is None else _id(value, name)


def clean(value: str, limit: int) -> str:
    """Display text without control characters (line breaks kept), at most `limit`."""
    if unsafe_text(value, lines=True):
        value = "".join(ch for ch in value if not unsafe_text(ch, lines=True))
    return value[:limit]


def _fen(value: int, name: str) -> int:
    if not 0 <= value <= MAX_FEN:
        raise ValueError(f"{name} is out of range: {value}")
    return value


def _item(item: Item, n: int) -> Item:
    if not 1 <= item.qty <= MAX_QTY:
        raise ValueError(f"items[{n}].qty must be from 1 to {MAX_QTY}, got {item.qty}")
    return dataclasses.replace(
        item,
        sku=_id(item.sku, f"items[{n}].sku"),
        name=clean(item.name, 128),
        unit_price_fen=_fen(item.unit_price_fen, f"items[{n}].unit_price"),
        category=clean(item.category, 64),
    )


def storable(event: ReturnRequest) -> ReturnRequest:
    """`event` as it can be stored, or ValueError naming the first field that cannot."""
    if not _CURRENCY.fullmatch(event.currency):
        raise ValueError(f"currency must be three capital letters: {event.currency[:8]!r}")
    for url in event.evidence:
        if unsafe_text(url) or len(url) > MAX_URL:
            raise ValueError(f"an evidence URL is malformed or over {MAX_URL} characters")
    return dataclasses.replace(
        event,
        shop=_id(event.shop, "shop"),
        external_id=_id(event.external_id, "external id"),
        order_id=_id(event.order_id, "order id"),
        amount_fen=_fen(event.amount_fen, "amount"),
        reason_code=clean(event.reason_code, 64),
        reason_text=clean(event.reason_text, 2000),
        buyer_ref=_id(event.buyer_ref, "buyer ref"),
        buyer_nick=clean(event.buyer_nick, 64),
        items=tuple(_item(item, n) for n, item in enumerate(event.items)),
        return_waybill=_optional_id(event.return_waybill, "return waybill"),
        carrier=None if event.carrier is None else clean(event.carrier, 32),
        exchange_waybill=_optional_id(event.exchange_waybill, "exchange waybill"),
        exchange_carrier=None
        if event.exchange_carrier is None
        else clean(event.exchange_carrier, 32),
    )
