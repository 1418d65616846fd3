"""Taobao/Tmall refunds -> neutral events (channels.md §1.2–1.3, §6.1).

A TMC message is thin: a topic and a few ids, no status. It only says which
refund to fetch; `taobao.refund.get` gives the detail, which alone becomes a
`ReturnRequest`. Ids stay strings (refund_id and tid exceed 2^53), money goes to
fen from the yuan strings without a float, times are China time without an
offset, and `refund_version` (milliseconds) orders the updates of one refund:
an older detail never overwrites a newer one (handlers/versions.py).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from bot import keys
from bot.channels.fields import BadMessage, china, numeric_id, yuan_fen
from bot.events import Item, ReturnRequest

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
        content = json.loads(message.get("content") or "{}")
    except (TypeError, ValueError) as exc:
        raise BadMessage(f"content is not JSON: {exc}") from None
    if not isinstance(content, dict):
        raise BadMessage("content is not a JSON object")
    shop = str(message.get("user_nick") or content.get("seller_nick") or "")
    if not shop:
        raise BadMessage("no seller nick in the message")
    return Notice(
        message_id=numeric_id(message.get("id"), "id"),
        topic=topic,
        shop=shop,
        refund_id=numeric_id(content.get("refund_id"), "refund_id"),
    )


def reason_code(reason: str) -> str:
    return next((code for word, code in REASONS if word in reason), "other")


def kind_of(refund: dict[str, Any]) -> str:
    if refund.get("has_good_return") in (True, "true"):
        return "return_refund"
    return "refund_only"


def request(refund: dict[str, Any], shop: str, message_id: str) -> ReturnRequest:
    """The detail of `taobao.refund.get` as the neutral event (key: TMC message id)."""
    status = STATUSES.get(str(refund.get("status", "")))
    if status is None:
        raise BadMessage(f"unknown refund status {refund.get('status')!r}")
    version = numeric_id(refund.get("refund_version"), "refund_version")
    created = china(refund.get("created")) or china(refund.get("modified"))
    if created is None:
        raise BadMessage("the refund has neither created nor modified")
    amount = yuan_fen(refund.get("refund_fee"), "refund_fee")
    item = Item(
        sku=str(refund.get("outer_id") or refund.get("num_iid") or ""),
        name=str(refund.get("title") or ""),
        qty=int(refund.get("num") or 1),
        unit_price_fen=yuan_fen(refund.get("price") or "0", "price", allow_zero=True),
    )
    reason = str(refund.get("reason") or "")
    return ReturnRequest(
        key=keys.key(CHANNEL, shop, "tmc", message_id),
        channel=CHANNEL,
        shop=shop,
        external_id=numeric_id(refund.get("refund_id"), "refund_id"),
        order_id=numeric_id(refund.get("tid"), "tid"),
        kind=kind_of(refund),
        status=status,
        amount_fen=amount,
        version=version,
        occurred_at=china(refund.get("modified")) or created,
        reason_code=reason_code(reason),
        reason_text="；".join(t for t in (reason, str(refund.get("desc") or "")) if t),
        buyer_ref=str(refund.get("buyer_open_uid") or refund.get("buyer_nick") or ""),
        buyer_nick=str(refund.get("buyer_nick") or ""),
        items=(item,),
        return_waybill=str(refund.get("sid") or "") or None,
        carrier=str(refund.get("company_name") or "") or None,
    )
