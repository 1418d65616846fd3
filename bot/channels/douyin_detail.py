"""`afterSale/Detail` -> the neutral `ReturnRequest` (reference/channels.md §6.2).

The detail is the truth a thin push points at. Its `update_time` (unix seconds)
is the channel version: the intake applies the event only when it is newer
than the case's, so two pushes handled out of order, or a detail fetched late,
never move a case backwards. Statuses map onto what the workflow hears from a
channel: a request (6, and 7/8 when the seller agreed elsewhere), the buyer's
shipment (11, with the return waybill and carrier), a refund (12, refund_status
3, 51/53), a close (28, and the cancel types 4/5); the rest (27/29 rejected,
13/14 exchange legs, arbitration) update the case's version and audit trail only.
"""

from __future__ import annotations

import re
from typing import Any

from bot.channels.storable import storable
from bot.channels.values import fen_int, id_str, listed, utc_time
from bot.events import Item, ReturnRequest

CHANNEL = "douyin"
_INT = re.compile(r"-?[0-9]{1,18}")  # ASCII digits only: int() also reads "٣", not "²"
RETURN, REFUND_SHIPPED, REFUND_UNSHIPPED, EXCHANGE = 0, 1, 2, 3
SYSTEM_CANCEL, BUYER_CANCEL, PRICE_PROTECT, RESEND, REPAIR = 4, 5, 6, 7, 8
KINDS = {
    RETURN: "return_refund",
    REFUND_SHIPPED: "refund_only",
    REFUND_UNSHIPPED: "refund_only",
    PRICE_PROTECT: "refund_only",
    EXCHANGE: "exchange",
    RESEND: "exchange",
    REPAIR: "exchange",
}
REQUESTED = frozenset({6, 7, 8})
SHIPPED = 11
REFUNDED = frozenset({12, 51, 53})
CLOSED = 28
REFUND_DONE = 3  # refund_status


class DetailError(ValueError):
    """The detail lacks what a case needs; the notice is retried, then dead-lettered."""


def _table(value: object) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def info_of(data: dict[str, Any]) -> dict[str, Any]:
    process = data.get("process_info")
    info = process.get("after_sale_info") if isinstance(process, dict) else None
    if not isinstance(info, dict):
        raise DetailError("afterSale/Detail answer has no process_info.after_sale_info")
    return info


def _int(info: dict[str, Any], name: str, default: int = -1) -> int:
    value = info.get(name, default)
    if isinstance(value, str) and _INT.fullmatch(value):
        return int(value)
    return value if isinstance(value, int) and not isinstance(value, bool) else default


def status_of(info: dict[str, Any]) -> str:
    """The neutral status of an after-sale as the detail shows it."""
    status, kind = _int(info, "after_sale_status"), _int(info, "after_sale_type")
    if status in REFUNDED or _int(info, "refund_status") == REFUND_DONE:
        return "refunded"
    if status == CLOSED or kind in (SYSTEM_CANCEL, BUYER_CANCEL):
        return "cancelled"
    if status == SHIPPED:
        return "buyer_shipped"
    if status in REQUESTED:
        return "requested"
    return "updated"


def _items(order: dict[str, Any]) -> tuple[Item, ...]:
    items = []
    for sku in listed(order.get("sku_order_infos"), "order_info.sku_order_infos"):
        if not isinstance(sku, dict):
            continue
        qty = max(_int(sku, "after_sale_item_count", 0) or _int(sku, "item_quantity", 1), 1)
        paid = fen_int(sku.get("pay_amount", 0), "sku_order_infos[].pay_amount")
        bought = max(_int(sku, "item_quantity", qty), 1)
        code = sku.get("shop_sku_code") or sku.get("sku_id") or sku.get("sku_order_id")
        items.append(
            Item(
                sku=id_str(code, "sku_order_infos[].sku_id")[:64],
                name=str(sku.get("product_name") or "")[:128] or "抖店商品",
                qty=qty,
                unit_price_fen=paid // bought,
            )
        )
    return tuple(items)


def _waybill(data: dict[str, Any]) -> tuple[str | None, str | None]:
    process = data.get("process_info") or {}
    logistics = process.get("logistics_info") if isinstance(process, dict) else None
    back = logistics.get("return") if isinstance(logistics, dict) else None
    if not isinstance(back, dict) or not back.get("tracking_no"):
        return None, None
    carrier = str(back.get("company_name") or back.get("company_code") or "")[:32] or None
    return str(back["tracking_no"])[:64], carrier


def to_request(data: dict[str, Any], *, key: str, shop: str) -> ReturnRequest:
    """The neutral event for a fetched detail; `key` is the notice's idempotency key."""
    info = info_of(data)
    order = _table(data.get("order_info"))
    try:
        external_id = id_str(info.get("after_sale_id"), "after_sale_id")
        updated = utc_time(info.get("update_time"), "update_time")
        version = str(int(updated.timestamp()))
        amount = fen_int(info.get("refund_total_amount", 0), "refund_total_amount")
        deadline_raw = info.get("status_deadline")
        deadline = utc_time(deadline_raw, "status_deadline") if deadline_raw else None
        order_id = id_str(order.get("shop_order_id"), "order_info.shop_order_id")
        items = _items(order)
    except ValueError as exc:
        raise DetailError(f"afterSale/Detail: {exc}") from None
    waybill, carrier = _waybill(data)
    reason = " ".join(str(info.get(k) or "") for k in ("reason", "reason_remark")).strip()
    evidence = tuple(
        url
        for url in listed(info.get("evidence"), "evidence")
        if isinstance(url, str) and url.startswith("http")
    )
    event = ReturnRequest(
        key=key,
        channel=CHANNEL,
        shop=shop,
        external_id=external_id,
        order_id=order_id,
        kind=KINDS.get(_int(info, "after_sale_type"), "refund_only"),
        status=status_of(info),
        amount_fen=amount,
        version=version,
        occurred_at=updated,
        reason_code=str(_int(info, "reason_code", 0) or ""),
        reason_text=reason[:2000],
        items=items,
        return_waybill=waybill,
        carrier=carrier,
        evidence=evidence[:50],
        deadline_at=deadline,
    )
    try:
        return storable(event)
    except ValueError as exc:
        raise DetailError(f"afterSale/Detail: {exc}") from None
