"""TOP calls: the three signing recipes, the form a call posts, and how the gateway's
answers sort into results, retryable faults, expired sessions and refusals — against
the fake TOP gateway, which checks what the real router checks."""

from __future__ import annotations

import hashlib
import hmac
from datetime import UTC, datetime, timedelta

import aiohttp
import pytest

from bot.channels import top
from bot.channels.api_errors import Refused, SessionExpired, Transient
from tests.fakes.taobao import APP_KEY, APP_SECRET, SESSION, running_top
from tests.support import FakeClock

# The worked example of TOP's signature documentation (sign_method=md5).
DOC = {
    "app_key": "12345678", "fields": "num_iid,title,nick,price,num", "format": "json",
    "method": "taobao.item.seller.get", "num_iid": "11223344", "session": "test",
    "sign_method": "md5", "timestamp": "2016-01-01 12:00:00", "v": "2.0",
}  # fmt: skip


def test_md5_signs_the_documented_example() -> None:
    assert top.sign(DOC, "helloworld", "md5") == "66987CB115214E59E6EC978214934FB8"


def test_hmac_methods_key_the_sorted_string_without_wrapping() -> None:
    text = top.sign_string({**DOC, "sign": "ignored", "empty": ""}).encode()
    assert text.startswith(b"app_key12345678fieldsnum_iid") and b"ignored" not in text
    assert top.sign(DOC, "k", "hmac") == hmac.new(b"k", text, hashlib.md5).hexdigest().upper()
    assert (
        top.sign(DOC, "k", "hmac-sha256")
        == hmac.new(b"k", text, hashlib.sha256).hexdigest().upper()
    )
    with pytest.raises(ValueError, match="sign_method"):
        top.sign(DOC, "k", "sha1")


def test_response_key_and_china_time() -> None:
    assert top.response_key("taobao.rp.refunds.agree") == "rp_refunds_agree_response"
    assert top.china_time(datetime(2026, 11, 30, 16, 30, tzinfo=UTC)) == "2026-12-01 00:30:00"


@pytest.mark.parametrize("method", top.SIGN_METHODS)
async def test_a_signed_call_passes_the_gateway(method: str) -> None:
    clock = FakeClock()
    async with running_top(clock) as fake, aiohttp.ClientSession() as http:
        fake.refunds["123456789012345678901"] = {"refund_id": "123456789012345678901",
                                                  "status": "WAIT_SELLER_AGREE"}  # fmt: skip
        client = top.TopClient(
            lambda: http, api_base=fake.url, app_key=APP_KEY, app_secret=APP_SECRET,
            session=SESSION, clock=clock, sign_method=method,
        )  # fmt: skip
        found = await client.call("taobao.refund.get", refund_id="123456789012345678901",
                                  fields=["refund_id", "status"])  # fmt: skip
    assert found == {"refund": fake.refunds["123456789012345678901"]}
    [form] = fake.calls_of("taobao.refund.get")
    assert form["fields"] == "refund_id,status" and form["sign_method"] == method
    assert fake.refused == []


async def test_the_gateway_refuses_what_the_real_one_refuses() -> None:
    clock = FakeClock()
    async with running_top(clock) as fake, aiohttp.ClientSession() as http:

        def client(**changes: str) -> top.TopClient:
            args = {"app_key": APP_KEY, "app_secret": APP_SECRET, "session": SESSION, **changes}
            return top.TopClient(lambda: http, api_base=fake.url, clock=clock, **args)

        with pytest.raises(Refused, match="25 Invalid Signature"):
            await client(app_secret="wrong").call("taobao.refund.get", refund_id="1")
        with pytest.raises(SessionExpired, match="27 Invalid session"):
            await client(session="expired").call("taobao.refund.get", refund_id="1")
        with pytest.raises(Refused, match="22 Invalid Method"):
            await client().call("taobao.no.such.method")
        late = top.TopClient(
            lambda: http,
            api_base=fake.url,
            app_key=APP_KEY,
            app_secret=APP_SECRET,
            session=SESSION,
            clock=lambda: clock() - timedelta(minutes=11),
        )
        with pytest.raises(Refused, match="32 Invalid Timestamp"):
            await late.call("taobao.refund.get", refund_id="1")
    assert len(fake.refused) == 4 and fake.calls == []


async def test_faults_sort_into_retryable_and_permanent() -> None:
    clock = FakeClock()
    async with running_top(clock) as fake, aiohttp.ClientSession() as http:
        client = top.TopClient(lambda: http, api_base=fake.url, app_key=APP_KEY,
                               app_secret=APP_SECRET, session=SESSION, clock=clock)  # fmt: skip
        remote = "Remote service error"
        fake.fail_next = [
            502,
            {"code": 7, "msg": "App Call Limited", "sub_code": "accesscontrol.limited-by-api"},
            {"code": 15, "msg": remote, "sub_code": "isp.top-remote-connection-timeout"},
            {"code": 15, "msg": remote, "sub_code": "isv.refund-status-error"},
        ]
        for _ in range(3):
            with pytest.raises(Transient):
                await client.call("taobao.refund.get", refund_id="1")
        with pytest.raises(Refused, match="isv.refund-status-error"):
            await client.call("taobao.refund.get", refund_id="1")
        with pytest.raises(Refused, match="isv.refund-not-exist"):
            await client.call("taobao.refund.get", refund_id="404")


async def test_tmc_redelivers_what_was_not_confirmed() -> None:
    clock = FakeClock()
    async with running_top(clock) as fake, aiohttp.ClientSession() as http:
        client = top.TopClient(lambda: http, api_base=fake.url, app_key=APP_KEY,
                               app_secret=APP_SECRET, session=SESSION, clock=clock)  # fmt: skip
        first = fake.push("taobao_refund_RefundCreated", {"refund_id": 1, "tid": 2})
        second = fake.push("taobao_refund_RefundCreated", {"refund_id": 3, "tid": 4})
        got = await client.call("taobao.tmc.messages.consume", group_name="default", quantity=10)
        assert [m["id"] for m in got["messages"]["tmc_message"]] == [first, second]
        assert await client.call("taobao.tmc.messages.consume", group_name="default") == {}
        await client.call("taobao.tmc.messages.confirm", group_name="default",
                          s_message_ids=[first])  # fmt: skip
        clock.advance(61)
        again = await client.call("taobao.tmc.messages.consume", group_name="default")
        assert [m["id"] for m in again["messages"]["tmc_message"]] == [second]
