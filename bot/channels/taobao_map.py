"""Taobao/Tmall refunds -> neutral events (channels.md §1.2–1.3, §6.1).

A TMC message is thin: a topic and a few ids, no status. It only says which
refund to fetch; `taobao.refund.get` gives the detail, which alone becomes a
`ReturnRequest`. Ids stay strings (refund_id and tid exceed 2^53), money goes to
fen from the yuan strings without a float, times are China time without an
offset, and `refund_version` (milliseconds) orders the updates of one refund:
an older detail never overwrites a newer one (handlers/versions.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from bot import keys
from bot.channels.storable import storable
from bot.channels.values import count, id_str, minor_from_decimal, utc_time
from bot.events import Item, ReturnRequest
from bot.web.body import json_value

CHANNEL = "taobao"
REFUND_TOPICS = frozenset(
    {
        "taobao_refund_RefundCreated",
        "taobao_refund_RefundSellerAgreeAgreement",
        "taobao_refund_RefundSellerRefuseAgreement",
        "taobao_refund_RefundBuyerModifyAgreement",
        "taobao_refund_RefundBuyerReturnGoods",
        "taobao_refund_RefundClosed",
        "taobao_refund_RefundSuccess",
        "taobao_refund_TaobaoInterApplied",
        "taobao_refund_TaobaoIntervened",
        "taobao_refund_OrderStatusSync",
    }
)
DETAIL_FIELDS = (
    "refund_id,tid,oid,buyer_nick,buyer_open_uid,seller_nick,total_fee,status,created,"
    "modified,refund_fee,good_status,has_good_return,reason,desc,num_iid,title,price,num,"
    "outer_id,sku,sid,company_name,refund_phase,refund_version,refund_remind_timeout"
)
# API status -> the neutral status a channel reports (bot/events.py ReturnRequest).
STATUSES = {
    "WAIT_SELLER_AGREE": "requested",
    "WAIT_BUYER_RETURN_GOODS": "requested",  # agreed by us: the case moves on by itself
    "WAIT_SELLER_CONFIRM_GOODS": "buyer_shipped",
    "SELLER_REFUSE_BUYER": "requested",  # refused by us: nothing new to apply
    "CLOSED": "cancelled",
    "SUCCESS": "refunded",
}
# Taobao's reason texts (买家选择的退款原因) -> the two-level reason codes.
REASONS = (
    ("七天无理由", "no_reason_7day"),
    ("尺码", "size.mismatch"),
    ("描述不符", "description.mismatch"),
    ("与商品描述", "description.mismatch"),
    ("质量问题", "quality.defect"),
    ("破损", "logistics.damaged"),
    ("少件", "logistics.missing_parts"),
    ("漏发", "logistics.missing_parts"),
    ("错发", "logistics.wrong_item"),
    ("假货", "quality.counterfeit"),
    ("不想要", "no_reason_7day"),
)


@dataclass(frozen=True, slots=True)
class Notice:
    """What a TMC message says: which refund of which shop changed."""

    message_id: str
    topic: str
    shop: str  # the seller nick, the shop key in TMC
    refund_id: str


def notice(message: dict[str, Any]) -> Notice | None:
    """The refund a TMC message names; None for a topic we do not follow."""
    topic = str(message.get("topic", ""))
    if topic not in REFUND_TOPICS:
        return None
    try:
        content = json_value(message.get("content") or "{}")
    except (TypeError, ValueError) as exc:
        raise ValueError(f"content is not JSON: {exc}") from None
    if not isinstance(content, dict):
        raise ValueError("content is not a JSON object")
    shop = str(message.get("user_nick") or content.get("seller_nick") or "")
    if not shop:
        raise ValueError("no seller nick in the message")
    return Notice(
        message_id=id_str(message.get("id"), "id"),
        topic=topic,
        shop=shop,
        refund_id=id_str(content.get("refund_id"), "refund_id"),
    )


def _when(value: Any, name: str) -> datetime | None:
    return utc_time(value, name) if value else None


def _fen(value: Any, name: str) -> int:
    fen = minor_from_decimal(value, name)
    if fen < 0:
        raise ValueError(f"{name} must not be negative: {value!r}")
    return fen


def deadline(refund: dict[str, Any]) -> datetime | None:
    """When Taobao acts by itself (`refund_remind_timeout.timeout`, China time), if it says;
    a shape we do not know is no deadline, never a refusal (the field is advisory)."""
    remind = refund.get("refund_remind_timeout")
    if not isinstance(remind, dict) or not remind.get("timeout"):
        return None
    try:
        return utc_time(remind["timeout"], "refund_remind_timeout.timeout")
    except ValueError:
        return None


def reason_code(reason: str) -> str:
    return next((code for word, code in REASONS if word in reason), "other")


def kind_of(refund: dict[str, Any]) -> str:
    if refund.get("has_good_return") in (True, "true"):
        return "return_refund"
    return "refund_only"


def notice_key(shop: str, message_id: str) -> str:
    return keys.key(CHANNEL, shop, "tmc", message_id)


def request(refund: dict[str, Any], *, key: str, shop: str) -> ReturnRequest:
    """The detail of `taobao.refund.get` as the neutral event, under its notice's `key`."""
    status = STATUSES.get(str(refund.get("status", "")))
    if status is None:
        raise ValueError(f"unknown refund status {refund.get('status')!r}")
    version = id_str(refund.get("refund_version"), "refund_version")
    created = _when(refund.get("created"), "created") or _when(refund.get("modified"), "modified")
    if created is None:
        raise ValueError("the refund has neither created nor modified")
    amount = _fen(refund.get("refund_fee"), "refund_fee")
    item = Item(
        sku=str(refund.get("outer_id") or refund.get("num_iid") or ""),
        name=str(refund.get("title") or ""),
        qty=count(refund.get("num") or 1, "num"),
        unit_price_fen=_fen(refund.get("price") or "0", "price"),
    )
    reason = str(refund.get("reason") or "")
    return storable(
        ReturnRequest(
            key=key,
            channel=CHANNEL,
            shop=shop,
            external_id=id_str(refund.get("refund_id"), "refund_id"),
            order_id=id_str(refund.get("tid"), "tid"),
            kind=kind_of(refund),
            status=status,
            amount_fen=amount,
            version=version,
            occurred_at=_when(refund.get("modified"), "modified") or created,
            reason_code=reason_code(reason),
            reason_text="；".join(t for t in (reason, str(refund.get("desc") or "")) if t),
            buyer_ref=str(refund.get("buyer_open_uid") or refund.get("buyer_nick") or ""),
            buyer_nick=str(refund.get("buyer_nick") or ""),
            items=(item,),
            return_waybill=str(refund.get("sid") or "") or None,
            carrier=str(refund.get("company_name") or "") or None,
            deadline_at=deadline(refund),
        )
    )
