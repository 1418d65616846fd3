"""What the polled marketplaces answer (Taobao's refund detail, JD's refund
application, Douyin's after-sale detail and push items) is theirs, not ours: any
shape maps to a request that fits every column it goes to, or to a ValueError
naming the field (the notice is then retried and reported). Never a TypeError,
an overflow or a value the database refuses at commit.

The Shopify cases are the webhook's: they were 500s (a nested object that was
not one) or a failed commit after the 200-worthy checks (NUL, lone surrogate, a
quantity past BIGINT), found by tests/security/test_fuzz_webhooks.py.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import example, given
from sqlalchemy import select
from sqlalchemy.orm import selectinload

from bot.appkeys import CTX
from bot.channels import douyin_detail, jd_map, taobao_map
from bot.channels.storable import MAX_FEN, MAX_QTY
from bot.events import ReturnRequest
from bot.web.body import unsafe_text
from storage.models import Case
from tests.fakes.shopify import DOMAIN, return_payload, webhook_hmac
from tests.security.conftest import fuzz_settings
from tests.security.strategies import mutated
from tests.support import Client, table_counts
from tests.unit.test_taobao_map import detail as taobao_detail

JD = {"id": 900000000000000001, "orderId": 300000000000000001, "applyRefundSum": "29.90",
      "status": 0, "applyTime": "2026-11-23 10:00:00", "checkTime": "2026-11-23 10:00:00",
      "buyerId": "jd_buyer_01", "buyerName": "京东买家"}  # fmt: skip
DOUYIN: dict[str, Any] = {
    "process_info": {"after_sale_info": {
        "after_sale_id": 7001, "after_sale_status": 6, "after_sale_type": 1, "refund_status": 1,
        "refund_total_amount": 13200, "update_time": 1_800_000_000, "reason": "质量问题",
        "reason_code": 1, "evidence": ["https://img.example.com/1.jpg"],
        "status_deadline": 1_800_086_400}},
    "order_info": {"shop_order_id": 4705288465508532862, "sku_order_infos": [
        {"sku_order_id": 1, "product_name": "自动喂食器", "shop_sku_code": "FEEDER-2",
         "item_quantity": 1, "pay_amount": 13200}]},
}  # fmt: skip
INFO = ["process_info", "after_sale_info"]
SKU = ["order_info", "sku_order_infos"]
DOUYIN_PATHS = [INFO + [k] for k in DOUYIN["process_info"]["after_sale_info"]] + [
    SKU + [k] for k in DOUYIN["order_info"]["sku_order_infos"][0]
]


def with_info(**fields: Any) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(json.dumps(DOUYIN))
    data["process_info"]["after_sale_info"].update(fields)
    return data


def assert_storable(event: ReturnRequest) -> None:
    """Every text fits its column and carries nothing the database refuses."""
    fields = (event.shop, event.external_id, event.order_id, event.buyer_ref, event.buyer_nick,
              event.return_waybill or "", event.carrier or "", event.currency)  # fmt: skip
    assert all(len(v) <= 64 and not unsafe_text(v) for v in fields), fields
    assert not unsafe_text(event.reason_text, lines=True) and len(event.reason_text) <= 2000
    assert 0 <= event.amount_fen <= MAX_FEN
    for item in event.items:
        assert 1 <= item.qty <= MAX_QTY and 0 <= item.unit_price_fen <= MAX_FEN
        assert len(item.sku) <= 64 and len(item.name) <= 128
        assert not unsafe_text(item.sku) and not unsafe_text(item.name, lines=True)


def maps_or_refuses(build: Any) -> None:
    try:
        event = build()
    except ValueError:
        return
    assert_storable(event)


@fuzz_settings("sqlite")
@given(refund=mutated(taobao_detail()))
@example(refund=taobao_detail(num=[1]))  # was a TypeError
@example(refund=taobao_detail(num=10**30))  # was past the INTEGER column
@example(refund=taobao_detail(buyer_nick="b\x00", title="x" * 500, outer_id="s" * 200))
def test_taobao_details_map_or_are_refused(refund: dict[str, Any]) -> None:
    maps_or_refuses(lambda: taobao_map.request(refund, key="k", shop="喵星旗舰店"))


@fuzz_settings("sqlite")
@given(record=mutated(JD))
@example(record={**JD, "applyRefundSum": "NaN"})  # was decimal.InvalidOperation
@example(record={**JD, "applyRefundSum": "Infinity"})  # was an OverflowError
@example(record={**JD, "applyRefundSum": "1e40"})  # was past BIGINT
@example(record={**JD, "checkTime": "0001-01-01 00:00:00"})  # no UTC date: was an OverflowError
@example(record={**JD, "buyerName": "\ud800", "reason": "a\x00b"})
def test_jd_records_map_or_are_refused(record: dict[str, Any]) -> None:
    maps_or_refuses(lambda: jd_map.request(record, key="k", shop="jd-shop"))


@fuzz_settings("sqlite")
@given(data=mutated(DOUYIN, DOUYIN_PATHS))
@example(data={**DOUYIN, "order_info": {"shop_order_id": 1, "sku_order_infos": True}})
@example(data=with_info(evidence=7))  # both were a TypeError
@example(data=with_info(after_sale_type="²"))  # isdigit() yet not a number: read as unknown
def test_douyin_details_map_or_are_refused(data: dict[str, Any]) -> None:
    maps_or_refuses(lambda: douyin_detail.to_request(data, key="k", shop="95250"))


def line_item(**fields: Any) -> dict[str, Any]:
    body = return_payload()
    line = body["return_line_items"][0]
    for name, value in fields.items():
        sold = line["fulfillment_line_item"]["line_item"]
        (line if name in ("quantity", "return_reason_note") else sold)[name] = value
    return body


SHOPIFY_REFUSED = {
    "fulfillment_line_item is a list": {
        **return_payload(),
        "return_line_items": [
            {**return_payload()["return_line_items"][0], "fulfillment_line_item": [1]}
        ],
    },  # fmt: skip
    "return_line_items is not a list": {**return_payload(), "return_line_items": True},
    "quantity past BIGINT": line_item(quantity=10**30),
    "NUL in the sku": line_item(sku="a\x00b"),
    "NUL in the return id": {**return_payload(), "id": "r\x00"},
    "NUL as the currency": {**return_payload(), "currency": "\x00"},
}
SHOPIFY_CLEANED = {
    "NUL in the title": line_item(title="a\x00b"),
    "lone surrogate in the note": line_item(return_reason_note="\ud800"),
}


async def deliver(client: Client, body: dict[str, Any]) -> int:
    raw = json.dumps(body).encode()
    headers = {
        "X-Shopify-Topic": "returns/request", "X-Shopify-Shop-Domain": DOMAIN,
        "X-Shopify-Event-Id": "ev-1", "X-Shopify-Hmac-Sha256": webhook_hmac(raw),
    }  # fmt: skip
    resp = await client.post("/webhooks/shopify", data=raw, headers=headers)
    await resp.read()
    return resp.status


@pytest.mark.usefixtures("errors")
async def test_shopify_bodies_that_were_500s_are_refused(everything: Client) -> None:
    before = await table_counts(everything.app[CTX].db)
    for what, body in SHOPIFY_REFUSED.items():
        assert await deliver(everything, body) == 422, what
        assert await table_counts(everything.app[CTX].db) == before, what


@pytest.mark.usefixtures("errors")
@pytest.mark.parametrize("what", SHOPIFY_CLEANED)
async def test_shopify_display_text_the_database_refuses_is_cleaned(
    everything: Client, what: str
) -> None:
    assert await deliver(everything, SHOPIFY_CLEANED[what]) == 200
    async with everything.app[CTX].db.read() as session:
        case = (await session.scalars(select(Case).options(selectinload(Case.items)))).one()
    assert not unsafe_text(case.reason_text, lines=True)
    assert [item.name for item in case.items] in (["ab"], ["自动喂食器"])
