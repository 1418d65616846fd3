"""`afterSale/Detail` -> ReturnRequest: statuses, kinds, money in fen, ids as strings,
`update_time` as the version, `status_deadline` as the channel deadline."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from bot.channels.douyin_detail import DetailError, to_request


def detail(**info: Any) -> dict[str, Any]:
    base = {
        "after_sale_id": 7200000000000000001,
        "after_sale_status": 6,
        "after_sale_type": 0,
        "refund_total_amount": 13200,
        "update_time": 1_800_000_000,
        "status_deadline": 1_800_086_400,
        "reason": "质量问题",
        "reason_code": 3,
    }
    order = {
        "shop_order_id": 4705288465508532862,
        "sku_order_infos": [
            {"sku_id": 1, "product_name": "猫砂", "item_quantity": 2, "pay_amount": 13200}
        ],
    }
    return {"process_info": {"after_sale_info": {**base, **info}}, "order_info": order}


def test_a_request_maps_every_field() -> None:
    event = to_request(detail(), key="k", shop="95250")
    assert (event.external_id, event.order_id, event.kind, event.status) == (
        "7200000000000000001",
        "4705288465508532862",
        "return_refund",
        "requested",
    )
    assert (event.amount_fen, event.version, event.reason_code) == (13200, "1800000000", "3")
    assert event.occurred_at == datetime.fromtimestamp(1_800_000_000, UTC)
    assert event.deadline_at == datetime.fromtimestamp(1_800_086_400, UTC)
    assert [(i.sku, i.qty, i.unit_price_fen) for i in event.items] == [("1", 2, 6600)]


@pytest.mark.parametrize(
    ("info", "status"),
    [
        ({"after_sale_status": 12}, "refunded"),
        ({"after_sale_status": 6, "refund_status": 3}, "refunded"),
        ({"after_sale_status": 28}, "cancelled"),
        ({"after_sale_type": 5}, "cancelled"),
        ({"after_sale_status": 11}, "buyer_shipped"),
        ({"after_sale_status": 7}, "requested"),
        ({"after_sale_status": 27}, "updated"),
    ],
)
def test_statuses(info: dict[str, Any], status: str) -> None:
    assert to_request(detail(**info), key="k", shop="1").status == status


@pytest.mark.parametrize(
    ("kind", "neutral"), [(1, "refund_only"), (2, "refund_only"), (3, "exchange")]
)
def test_kinds(kind: int, neutral: str) -> None:
    assert to_request(detail(after_sale_type=kind), key="k", shop="1").kind == neutral


def test_the_return_waybill_comes_from_the_logistics() -> None:
    data = detail(after_sale_status=11)
    data["process_info"]["logistics_info"] = {
        "return": {"tracking_no": "YT123", "company_name": "圆通"}
    }
    event = to_request(data, key="k", shop="1")
    assert (event.return_waybill, event.carrier) == ("YT123", "圆通")


@pytest.mark.parametrize(
    "broken", [{"update_time": None}, {"refund_total_amount": 1.5}, {"after_sale_id": None}]
)
def test_a_detail_without_what_a_case_needs_is_an_error(broken: dict[str, Any]) -> None:
    with pytest.raises(DetailError):
        to_request(detail(**broken), key="k", shop="1")
