"""The generic channel's webhook body -> a neutral `ReturnRequest`, validated strictly.

The body is the one in CONTRACT.md ("Generic channel"). Every problem raises
`Rejected` with a message naming the field, so the OMS developer can fix the
integration from the answer alone: 400 when the body is not a JSON object, 422
when a field is missing, of the wrong type or out of range. Amounts must be
decimal strings in yuan; a JSON number is refused, because a float cannot carry
29.90 exactly. Unknown fields are refused too, so a typo ("reasoncode") fails
loudly instead of being silently dropped.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from typing import Any, NoReturn
from urllib.parse import urlsplit

from bot import keys
from bot.events import Item, ReturnRequest, time_version
from bot.money import parse_yuan, yuan
from bot.web.body import unsafe_text

CHANNEL = "generic"
KINDS = ("refund_only", "return_refund", "exchange")
STATUSES = ("requested", "buyer_shipped", "cancelled", "refunded")
EXCHANGE_STATUSES = ("exchange_shipped", "exchange_failed")  # the reshipment's outcome
CURRENCIES = ("CNY",)
FIELDS = frozenset(
    {
        *("event_id", "shop", "external_id", "order_id", "kind", "status", "amount"),
        *("currency", "reason_code", "reason_text", "buyer", "items", "return_waybill"),
        *("carrier", "evidence", "occurred_at", "version", "operator"),
        *("exchange_waybill", "exchange_carrier"),
        "deadline_at",
    }
)
BUYER_FIELDS = frozenset({"ref", "nick"})
ITEM_FIELDS = frozenset({"sku", "name", "qty", "unit_price"})
MAX_ITEMS, MAX_QTY, MAX_EVIDENCE, MAX_URL = 200, 100_000, 50, 2048
MAX_VERSION_DIGITS = 32  # cases.channel_version holds 32 characters
_DECIMAL = re.compile(r"(0|[1-9][0-9]*)(\.[0-9]{1,2})?")


class Rejected(Exception):
    """The request is refused; `status` and `message` become the JSON answer."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def _fail(message: str, status: int = 422) -> NoReturn:
    raise Rejected(status, message)


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise ValueError(f"duplicate key {key!r}")
        result[key] = value
    return result


def _no_constants(name: str) -> NoReturn:
    raise ValueError(f"{name} is not valid JSON")


def decode(raw: bytes) -> dict[str, Any]:
    """Bytes -> a JSON object: UTF-8, no duplicate keys, no NaN/Infinity."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        _fail("body is not valid UTF-8", 400)
    try:
        data = json.loads(text, object_pairs_hook=_no_duplicates, parse_constant=_no_constants)
    except (ValueError, RecursionError) as exc:
        _fail(f"body is not valid JSON: {exc}", 400)
    if not isinstance(data, dict):
        _fail("body must be a JSON object", 400)
    return data


def _text(
    data: dict[str, Any],
    name: str,
    max_len: int,
    *,
    field: str = "",
    required: bool = False,
    multiline: bool = False,
) -> str | None:
    where = field or name
    value = data.get(name)
    if value is None:
        if required:
            _fail(f"{where} is required")
        return None
    if not isinstance(value, str):
        _fail(f"{where} must be a string, got {_type(value)}")
    if required and not value.strip():
        _fail(f"{where} must not be empty")
    if len(value) > max_len:
        _fail(f"{where} is longer than {max_len} characters")
    if unsafe_text(value, lines=multiline):
        _fail(f"{where} must not contain control characters or lone surrogates")
    return value


def _required(data: dict[str, Any], name: str, max_len: int, field: str = "") -> str:
    value = _text(data, name, max_len, field=field, required=True)
    if value is None:  # unreachable: _text raised; narrows the type
        _fail(f"{field or name} is required")
    return value


def _type(value: object) -> str:
    return {bool: "boolean", int: "number", float: "number", list: "array", dict: "object"}.get(
        type(value), type(value).__name__
    )


def _choice(data: dict[str, Any], name: str, choices: tuple[str, ...]) -> str:
    value = _required(data, name, 32)
    if value not in choices:
        _fail(f"{name} must be one of {', '.join(choices)}; got {value!r}")
    return value


def _yuan(value: object, where: str, *, allow_zero: bool) -> int:
    if value is None:
        _fail(f"{where} is required")
    if not isinstance(value, str):
        _fail(f'{where} must be a decimal string in yuan such as "29.90", got {_type(value)}')
    if not _DECIMAL.fullmatch(value):
        _fail(f'{where} must be a decimal string in yuan such as "29.90", got {value!r}')
    try:
        return parse_yuan(value, allow_zero=allow_zero)
    except ValueError as exc:
        _fail(f"{where}: {exc}")


def _object(value: object, where: str, allowed: frozenset[str]) -> dict[str, Any]:
    if not isinstance(value, dict):
        _fail(f"{where} must be an object, got {_type(value)}")
    unknown = sorted(set(value) - allowed)
    if unknown:
        _fail(f"{where}: unknown field {unknown[0]!r}")
    return value


def _items(value: object) -> tuple[Item, ...]:
    if not isinstance(value, list):
        _fail(
            "items is required" if value is None else f"items must be an array, got {_type(value)}"
        )
    if not value:
        _fail("items must list at least one item")
    if len(value) > MAX_ITEMS:
        _fail(f"items has more than {MAX_ITEMS} entries")
    result = []
    for n, raw in enumerate(value):
        where = f"items[{n}]"
        item = _object(raw, where, ITEM_FIELDS)
        qty = item.get("qty")
        if isinstance(qty, bool) or not isinstance(qty, int):
            _fail(f"{where}.qty must be an integer, got {_type(qty)}")
        if not 0 < qty <= MAX_QTY:
            _fail(f"{where}.qty must be between 1 and {MAX_QTY}, got {qty}")
        result.append(
            Item(
                sku=_required(item, "sku", 64, f"{where}.sku"),
                name=_required(item, "name", 128, f"{where}.name"),
                qty=qty,
                unit_price_fen=_yuan(
                    item.get("unit_price"), f"{where}.unit_price", allow_zero=True
                ),
            )
        )
    return tuple(result)


def _evidence(value: object) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list):
        _fail(f"evidence must be an array of URLs, got {_type(value)}")
    if len(value) > MAX_EVIDENCE:
        _fail(f"evidence has more than {MAX_EVIDENCE} entries")
    urls = []
    for n, url in enumerate(value):
        where = f"evidence[{n}]"
        if not isinstance(url, str) or len(url) > MAX_URL or unsafe_text(url):
            _fail(f"{where} must be an http(s) URL of at most {MAX_URL} characters")
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            _fail(f"{where} must be an http(s) URL")
        urls.append(url)
    return tuple(urls)


def _occurred_at(value: object, now: datetime) -> datetime:
    return now.astimezone(UTC) if value is None else _instant(value, "occurred_at")


def _instant(value: object, name: str) -> datetime:
    """An ISO 8601 time with a UTC offset, as aware UTC."""
    if not isinstance(value, str):
        _fail(f"{name} must be an ISO 8601 string, got {_type(value)}")
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        _fail(f"{name} is not an ISO 8601 time: {value[:40]!r}")
    if moment.tzinfo is None or moment.utcoffset() is None:
        _fail(f"{name} must carry a UTC offset, e.g. 2026-11-21T10:00:00+08:00")
    try:
        return moment.astimezone(UTC)
    except OverflowError:  # 0001-01-01T00:00+08:00 has no UTC date
        _fail(f"{name} is out of range: {value[:40]!r}")


def _version(value: object, occurred: datetime) -> str:
    """The channel version: a non-negative integer, compared as a number by intake.

    Without one, the event time orders updates: stored as `time_version` so that
    intake parses it back and compares datetimes (never text, where "999-…" sorts
    after "2026-…"). Anything else is refused, so no two versions of different
    kinds are ever compared (docs/generic-channel.md "版本顺序").
    """
    if value is None:
        return time_version(occurred)
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        value = str(value)
    if not isinstance(value, str):
        _fail(f"version must be a non-negative integer or a string of digits, got {_type(value)}")
    # ASCII only: "²".isdigit() is true while int("²") raises.
    if not (value.isascii() and value.isdigit() and len(value) <= MAX_VERSION_DIGITS):
        _fail(
            f"version must be a non-negative integer of 1 to {MAX_VERSION_DIGITS} digits, "
            f"got {value[:40]!r}; leave it out to order updates by occurred_at"
        )
    return value


def _amount(value: object, kind: str, items: tuple[Item, ...]) -> int:
    """The requested amount: at most the items' total (less is a partial refund).

    A refund (refund_only, return_refund) must ask for money; an exchange may be 0.
    """
    amount = _yuan(value, "amount", allow_zero=True)
    if amount == 0 and kind != "exchange":
        _fail(f"amount must be greater than 0 for kind {kind}; only an exchange may carry 0")
    total = sum(item.qty * item.unit_price_fen for item in items)
    if amount > total:
        _fail(
            f"amount {yuan(amount)} exceeds the items' total {yuan(total)} "
            "(sum of items[].qty × items[].unit_price)"
        )
    return amount


def parse(raw: bytes, *, default_shop: str, now: datetime) -> ReturnRequest:
    """Validate the body and build the neutral event (idempotency key per shop + event id)."""
    data = decode(raw)
    unknown = sorted(set(data) - FIELDS)
    if unknown:
        _fail(f"unknown field {unknown[0]!r}")
    event_id = _required(data, "event_id", 128)
    shop = _text(data, "shop", 64) or default_shop
    kind = _choice(data, "kind", KINDS)
    status = _choice(data, "status", STATUSES + EXCHANGE_STATUSES)
    currency = _text(data, "currency", 8) or "CNY"
    if currency not in CURRENCIES:
        _fail(f"currency {currency!r} is not supported; only CNY for now")
    raw_buyer = data.get("buyer")
    buyer = {} if raw_buyer is None else _object(raw_buyer, "buyer", BUYER_FIELDS)
    waybill = _text(data, "return_waybill", 64) or None
    if status == "buyer_shipped" and waybill is None:
        _fail("return_waybill is required when status is buyer_shipped")
    exchange_waybill = _text(data, "exchange_waybill", 64) or None
    if status == "exchange_shipped" and (kind != "exchange" or exchange_waybill is None):
        _fail("status exchange_shipped needs kind exchange and exchange_waybill")
    occurred = _occurred_at(data.get("occurred_at"), now)
    items = _items(data.get("items"))
    return ReturnRequest(
        key=keys.key(CHANNEL, shop, event_id),
        channel=CHANNEL,
        shop=shop,
        external_id=_required(data, "external_id", 64),
        order_id=_required(data, "order_id", 64),
        kind=kind,
        status=status,
        amount_fen=_amount(data.get("amount"), kind, items),
        version=_version(data.get("version"), occurred),
        occurred_at=occurred,
        currency=currency,
        reason_code=_text(data, "reason_code", 64) or "",
        reason_text=_text(data, "reason_text", 2000, multiline=True) or "",
        buyer_ref=_text(buyer, "ref", 64, field="buyer.ref") or "",
        buyer_nick=_text(buyer, "nick", 64, field="buyer.nick") or "",
        items=items,
        return_waybill=waybill,
        carrier=_text(data, "carrier", 32) or None,
        evidence=_evidence(data.get("evidence")),
        operator=_text(data, "operator", 64) or None,
        exchange_waybill=exchange_waybill,
        exchange_carrier=_text(data, "exchange_carrier", 32) or None,
        deadline_at=None
        if data.get("deadline_at") is None
        else _instant(data["deadline_at"], "deadline_at"),
    )
