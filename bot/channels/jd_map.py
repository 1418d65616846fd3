"""JD POP refund applications -> neutral events (channels.md §3.2, §6.3).

JD is polled (`jingdong.pop.afs.soa.refundapply.queryPageList` by check-time
window): each record is one refund application in its current state, so its key
is synthetic — `(shop, id, status, checkTime)`: a record seen again unchanged in
the next overlapping window is a duplicate, a changed one is new. Ids stay
strings; times are China time without an offset; `applyRefundSum` is a number
whose unit the reference could not confirm (yuan or fen, channels.md §8), so the
shop's configured unit decides and the conversion goes through Decimal, never a
float's arithmetic.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from bot import keys
from bot.channels.storable import storable
from bot.channels.values import id_str, utc_time
from bot.events import ReturnRequest, time_version

CHANNEL = "jd"
UNITS = ("yuan", "fen")
# Refund-apply status -> the neutral status; approvals, refusals and intercepts in
# progress are our own decisions echoed back: nothing new for the case.
REFUNDED = frozenset({3, 6, 9, 16})
CANCELLED = frozenset({11, 18})
KNOWN = frozenset({0, 1, 2, 4, 5, 7, 8, 10, 17, 19, 27}) | REFUNDED | CANCELLED


def fen(value: Any, unit: str) -> int:
    """`applyRefundSum` in fen: the number as written, read in `unit`, never a float's sum."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ValueError(f"applyRefundSum must be a number, got {value!r}")
    try:
        amount = Decimal(str(value))
    except InvalidOperation:
        raise ValueError(f"applyRefundSum {value!r} is not a number") from None
    if not amount.is_finite():  # "NaN" and "Infinity" are Decimals too
        raise ValueError(f"applyRefundSum {value!r} is not a number")
    cents = amount * 100 if unit == "yuan" else amount
    if cents <= 0 or cents != cents.to_integral_value():
        raise ValueError(f"applyRefundSum {value!r} is not a whole number of fen in {unit}")
    return int(cents)


def status_of(raw: Any) -> str:
    try:
        code = int(raw)
    except (TypeError, ValueError):
        raise ValueError(f"status must be a number, got {raw!r}") from None
    if code not in KNOWN:
        raise ValueError(f"unknown refund apply status {code}")
    if code in REFUNDED:
        return "refunded"
    return "cancelled" if code in CANCELLED else "requested"


def checked_at(record: dict[str, Any]) -> datetime:
    """When JD last reviewed it (its check time), else when it was applied for."""
    return utc_time(record.get("checkTime") or record.get("applyTime"), "checkTime")


def notice_key(record: dict[str, Any], shop: str) -> str:
    """One key per state of one application: (shop, id, status, check time)."""
    apply_id = id_str(record.get("id"), "id")
    return keys.key(
        CHANNEL, shop, apply_id, str(record.get("status")), time_version(checked_at(record))
    )


def request(record: dict[str, Any], *, key: str, shop: str, unit: str = "yuan") -> ReturnRequest:
    """A `queryPageList` record as the neutral event, under its notice's `key`."""
    apply_id = id_str(record.get("id"), "id")
    checked = checked_at(record)
    status = status_of(record.get("status"))
    return storable(
        ReturnRequest(
            key=key,
            channel=CHANNEL,
            shop=shop,
            external_id=apply_id,
            order_id=id_str(record.get("orderId"), "orderId"),
            kind="refund_only",
            status=status,
            amount_fen=fen(record.get("applyRefundSum"), unit),
            version=time_version(checked),
            occurred_at=checked,
            reason_code="other",
            reason_text=str(record.get("reason") or record.get("applyReason") or ""),
            buyer_ref=str(record.get("buyerId") or record.get("open_id_buyer") or ""),
            buyer_nick=str(record.get("buyerName") or ""),
        )
    )
