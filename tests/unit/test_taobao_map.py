"""Taobao refunds to neutral events: TMC notices, the detail's mapping, and refusals of
what can never be applied."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest

from bot.channels.taobao_map import notice, reason_code, request

REFUND_ID = 123456789012345678901  # more than 2^53: must stay exact


def detail(**changes: Any) -> dict[str, Any]:
    refund: dict[str, Any] = {
        "refund_id": REFUND_ID, "tid": 3725362658812595205, "oid": 3725362658812595205,
        "buyer_nick": "b**", "buyer_open_uid": "AAHk5d-buyer", "seller_nick": "喵星旗舰店",
        "status": "WAIT_SELLER_AGREE", "created": "2026-11-21 10:00:00",
        "modified": "2026-11-21 10:05:00", "refund_fee": "2880.00", "total_fee": "2880.00",
        "has_good_return": True, "reason": "收到商品破损", "desc": "外壳裂了",
        "num_iid": 60012345, "title": "自动喂食器", "price": "2880.00", "num": 1,
        "outer_id": "FEEDER-2", "refund_version": 1732154700000, "refund_phase": "aftersale",
    }  # fmt: skip
    refund.update(changes)
    return refund


def test_a_notice_names_the_refund_and_the_shop() -> None:
    content = json.dumps({"refund_id": REFUND_ID})
    message = {"id": 7000000000000000002, "topic": "taobao_refund_RefundCreated",
               "user_nick": "喵星旗舰店", "content": content}  # fmt: skip
    found = notice(message)
    assert found is not None
    assert (found.message_id, found.shop, found.refund_id) == (
        "7000000000000000002",
        "喵星旗舰店",
        str(REFUND_ID),
    )
    assert notice({**message, "topic": "taobao_trade_TradeCreate"}) is None
    for bad in ({"content": "{not json"}, {"content": "[1]"}, {"user_nick": ""},
                {"content": json.dumps({"refund_id": 1.5})}):  # fmt: skip
        with pytest.raises(ValueError):
            notice({**message, **bad})


def test_the_detail_maps_to_a_return_request() -> None:
    event = request(detail(), key="k", shop="喵星旗舰店")
    assert (event.channel, event.shop, event.external_id) == (
        "taobao",
        "喵星旗舰店",
        str(REFUND_ID),
    )
    assert event.order_id == "3725362658812595205" and event.kind == "return_refund"
    assert (event.status, event.amount_fen, event.version) == (
        "requested",
        288000,
        "1732154700000",
    )
    assert event.occurred_at == datetime(2026, 11, 21, 2, 5, tzinfo=UTC)  # China time -> UTC
    assert (
        event.reason_code == "logistics.damaged" and event.reason_text == "收到商品破损；外壳裂了"
    )
    assert event.buyer_ref == "AAHk5d-buyer"
    [item] = event.items
    assert (item.sku, item.name, item.qty, item.unit_price_fen) == (
        "FEEDER-2",
        "自动喂食器",
        1,
        288000,
    )


def test_statuses_waybills_and_kinds() -> None:
    shipped = request(
        detail(status="WAIT_SELLER_CONFIRM_GOODS", sid="SF1234567890123", company_name="顺丰速运"),
        key="k",
        shop="s",
    )
    assert (shipped.status, shipped.return_waybill, shipped.carrier) == (
        "buyer_shipped",
        "SF1234567890123",
        "顺丰速运",
    )
    assert request(detail(status="CLOSED"), key="k", shop="s").status == "cancelled"
    assert request(detail(status="SUCCESS"), key="k", shop="s").status == "refunded"
    assert request(detail(has_good_return=False), key="k", shop="s").kind == "refund_only"


def test_details_that_can_never_apply_are_refused() -> None:
    for bad in (
        {"status": "SOMETHING_NEW"},
        {"refund_fee": "-12.00"},
        {"refund_fee": 28.8},  # a float has lost the cents' exactness
        {"refund_version": None},
        {"created": None, "modified": None},
        {"modified": "2026/11/21"},
    ):
        with pytest.raises(ValueError):
            request(detail(**bad), key="k", shop="s")


def test_reason_codes() -> None:
    assert reason_code("七天无理由退换货") == "no_reason_7day"
    assert reason_code("商品与描述不符") == "description.mismatch"
    assert reason_code("少件/漏发") == "logistics.missing_parts"
    assert reason_code("其他") == "other"


def test_the_platforms_own_deadline_feeds_the_sla() -> None:
    timeout = {"remind_type": 1, "exist_timeout": True, "timeout": "2026-11-23 10:00:00"}
    event = request(detail(refund_remind_timeout=timeout), key="k", shop="s")
    assert event.deadline_at == datetime(2026, 11, 23, 2, 0, tzinfo=UTC)
    assert request(detail(), key="k", shop="s").deadline_at is None
    odd = detail(refund_remind_timeout={"timeout": "明天"})
    assert request(odd, key="k", shop="s").deadline_at is None
