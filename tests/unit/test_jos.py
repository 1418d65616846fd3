"""JD: the JOS signature and calls against the fake router, and refund applications to
neutral events (status mapping, synthetic keys, the amount's unit)."""

from __future__ import annotations

import hashlib
from typing import Any

import aiohttp
import pytest

from bot.channels import jos
from bot.channels.api_errors import Refused, SessionExpired, Transient
from bot.channels.jd_map import fen, notice_key, request
from tests.fakes.jd import APP_KEY, APP_SECRET, QUERY, REPLY, TOKEN, running_jos
from tests.support import FakeClock


def test_sign_wraps_the_sorted_pairs_in_the_secret() -> None:
    params = {"b": "2", "a": "1", "sign": "x", "360buy_param_json": '{"id":1}', "e": ""}
    text = 's360buy_param_json{"id":1}a1b2s'
    assert jos.sign(params, "s") == hashlib.md5(text.encode()).hexdigest().upper()  # noqa: S324


def client(
    http: aiohttp.ClientSession, url: str, clock: FakeClock, **changes: str
) -> jos.JosClient:
    args = {"app_key": APP_KEY, "app_secret": APP_SECRET, "access_token": TOKEN, **changes}
    return jos.JosClient(lambda: http, api_base=url, clock=clock, **args)


async def test_query_and_reply_through_the_fake_router() -> None:
    clock = FakeClock()
    async with running_jos(clock) as fake, aiohttp.ClientSession() as http:
        fake.add("900000000000000001", "300000000000000001", "132.00")
        c = client(http, fake.url, clock)
        window = {"checkTimeStart": "2026-11-23 00:00:00", "checkTimeEnd": "2026-11-23 23:59:59"}
        got = await c.call(QUERY, pageIndex=1, pageSize=50, **window)
        [record] = got["queryResult"]["result"]
        assert record["id"] == 900000000000000001
        answer = await c.call(
            REPLY, id="900000000000000001", status=1, remark="同意", checkUserName="rh"
        )
        assert answer["replyResult"]["success"] is True
        assert fake.refunds["900000000000000001"]["status"] == 1
        assert fake.calls_of(REPLY) == [
            {"id": "900000000000000001", "status": 1, "remark": "同意", "checkUserName": "rh"}
        ]


async def test_refusals_and_faults() -> None:
    clock = FakeClock()
    async with running_jos(clock) as fake, aiohttp.ClientSession() as http:
        with pytest.raises(SessionExpired):
            await client(http, fake.url, clock, access_token="old").call(QUERY)
        with pytest.raises(Refused, match="签名无效"):
            await client(http, fake.url, clock, app_secret="wrong").call(QUERY)
        fake.fail_next = [
            503,
            {"code": "66", "zh_desc": "服务繁忙，请稍后重试"},
            {"code": "50", "zh_desc": "参数错误"},
        ]
        c = client(http, fake.url, clock)
        for _ in range(2):
            with pytest.raises(Transient):
                await c.call(QUERY)
        with pytest.raises(Refused, match="参数错误"):
            await c.call(QUERY)
        assert fake.calls == []


def record(**changes: Any) -> dict[str, Any]:
    base = {"id": 900000000000000001, "orderId": 300000000000000001, "applyRefundSum": 132.5,
            "status": 0, "applyTime": "2026-11-23 10:00:00", "checkTime": "2026-11-23 10:00:00",
            "buyerId": "jd_buyer_01", "buyerName": "京东买家"}  # fmt: skip
    base.update(changes)
    return base


def test_a_record_maps_with_a_key_per_state() -> None:
    def event_of(**changes: Any) -> Any:
        found = record(**changes)
        return request(found, key=notice_key(found, "jd-shop"), shop="jd-shop")

    event = event_of()
    assert (event.channel, event.external_id, event.order_id) == (
        "jd",
        "900000000000000001",
        "300000000000000001",
    )
    assert (event.kind, event.status, event.amount_fen) == ("refund_only", "requested", 13250)
    assert event.buyer_ref == "jd_buyer_01"
    same = event_of()
    moved = event_of(status=11, checkTime="2026-11-23 11:00:00")
    assert same.key == event.key and moved.key != event.key  # a re-polled record is a duplicate
    assert moved.status == "cancelled" and moved.version > event.version
    assert event_of(status=6).status == "refunded"


def test_the_amount_unit_is_the_shops_and_never_a_float_sum() -> None:
    assert fen(132.5, "yuan") == 13250 and fen("0.29", "yuan") == 29
    assert fen(13250, "fen") == 13250
    for bad, unit in (
        (132.555, "yuan"),
        (0, "yuan"),
        (132.5, "fen"),
        (True, "yuan"),
        ("x", "yuan"),
    ):
        with pytest.raises(ValueError):
            fen(bad, unit)
    with pytest.raises(ValueError):
        request(record(status=99), key="k", shop="jd-shop")
