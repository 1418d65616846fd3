"""Every inbound endpoint, fed what hypothesis makes: random bytes, hostile headers,
and correctly signed bodies of every wrong shape (the signature is right, so the
deeper checks are reached). Against the real app: no 5xx, nothing logged at ERROR
or with a traceback, and a refusal stores nothing (row counts of every table).

On PostgreSQL (which refuses NUL and lone surrogates the driver is handed) the same
properties run on fewer examples.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from bot.appkeys import CTX, DISPATCH
from bot.platforms.dingtalk import EVENTS_PATH
from tests.fakes.dingtalk import FakeDingtalk
from tests.fakes.dingtalk_callbacks import DingtalkSigner, card_path
from tests.fakes.douyin import APP_KEY as DOUYIN_KEY
from tests.fakes.douyin import SHOP_ID, push_sign
from tests.fakes.shopify import return_payload
from tests.fakes.wecom import AGENT_ID, CORP_ID
from tests.fakes.wecom_callbacks import CallbackSigner
from tests.security.conftest import (
    assert_no_errors,
    fuzz_settings,
    on_loop,
    refused_changes_nothing,
)
from tests.security.endpoints import SHOPIFY_HEADERS, shopify_headers
from tests.security.strategies import dumps, json_values, mutated, texts, xml_documents
from tests.support import MEMBERS, Client, FakeClock, return_body, sign_generic, table_counts

pytestmark = pytest.mark.usefixtures("errors")
USERS = [wecom for _, _, wecom, _ in MEMBERS] + ["stranger"]
STAFF = [staff for _, _, _, staff in MEMBERS] + ["staff9999"]
TOPICS = ["returns/approve", "refunds/create", "returns/close", "orders/create"]


header_values = st.one_of(texts.filter(lambda t: t.isprintable()), st.sampled_from(["", "0"]))


async def post(client: Client, path: str, body: bytes, **kw: Any) -> int:
    """POST, wait for what the answer handed over to finish, and return the status."""
    before = await table_counts(client.app[CTX].db)
    resp = await client.post(path, data=body, **kw)
    await resp.read()
    await client.app[DISPATCH].idle()
    await refused_changes_nothing(client, resp.status, before)
    return resp.status


# --- WeCom -----------------------------------------------------------------------------

WECOM_FIELDS = {
    "ToUserName": CORP_ID, "FromUserName": "xiaozhou", "CreateTime": "1795400000",
    "MsgType": "text", "Content": "/帮助", "MediaId": "m1", "Event": "template_card_event",
    "EventKey": "approve", "TaskId": "t1", "ResponseCode": "rc", "MsgId": "1",
    "AgentID": str(AGENT_ID),
}  # fmt: skip


@st.composite
def wecom_inner(draw: st.DrawFn) -> str:
    fields = dict(WECOM_FIELDS, FromUserName=draw(st.sampled_from(USERS)))
    fields["MsgType"] = draw(st.sampled_from(["text", "image", "event", "voice", "x"]))
    return draw(xml_documents(fields))


async def test_wecom_sealed_content_of_any_shape(
    everything: Client, clock: FakeClock, engine: str
) -> None:
    signer = CallbackSigner(clock.timestamp)

    @fuzz_settings(engine)
    @given(inner=wecom_inner())
    @example(inner="<xml></xml>")
    @example(inner="not xml at all")
    @on_loop
    async def check(inner: str) -> None:
        query, body = signer.seal(inner)
        await post(everything, "/callbacks/wecom", body, params=query)

    await asyncio.to_thread(check)


async def test_wecom_envelopes_and_queries_of_any_shape(
    everything: Client, clock: FakeClock, engine: str
) -> None:
    signer = CallbackSigner(clock.timestamp)

    @fuzz_settings(engine)
    @given(
        encrypt=st.one_of(st.text(max_size=80), st.binary(max_size=60).map(lambda b: b.hex())),
        outer=st.sampled_from(
            [
                "<xml><Encrypt><![CDATA[{}]]></Encrypt></xml>",
                "<xml>{}</xml>",
                "{}",
                "<xml><Encrypt>{}</Encrypt><Encrypt>x</Encrypt></xml>",
            ]
        ),
        signed=st.booleans(),
        query=st.dictionaries(
            st.sampled_from(["msg_signature", "timestamp", "nonce", "echostr"]),
            header_values,
            max_size=4,
        ),
    )
    @on_loop
    async def check(encrypt: str, outer: str, signed: bool, query: dict[str, str]) -> None:
        if signed:
            query = {**query, **signer.signed_raw(encrypt)}
        body = outer.replace("{}", encrypt).encode("utf-8", "surrogatepass")
        await post(everything, "/callbacks/wecom", body, params=query)
        resp = await everything.get("/callbacks/wecom", params=query)
        assert resp.status < 500

    await asyncio.to_thread(check)


# --- DingTalk --------------------------------------------------------------------------


async def test_dingtalk_robot_messages_of_any_shape(
    everything: Client, clock: FakeClock, engine: str
) -> None:
    signer = DingtalkSigner(clock, FakeDingtalk(clock=lambda: clock.timestamp()))
    text = signer.text("xiaozhou", "/帮助")
    paths = [["text", "content"], ["content", "downloadCode"], ["content", "richText"]]

    @fuzz_settings(engine)
    @given(
        message=st.one_of(mutated(text, paths), json_values),
        staff=st.sampled_from(STAFF),
        sign=st.booleans(),
        headers=st.dictionaries(st.sampled_from(["timestamp", "sign"]), header_values),
    )
    @on_loop
    async def check(message: Any, staff: str, sign: bool, headers: dict[str, str]) -> None:
        if isinstance(message, dict) and "senderStaffId" in message:
            message["senderStaffId"] = staff
        if sign:
            headers = signer.headers()
        await post(everything, "/callbacks/dingtalk", dumps(message), headers=headers)

    await asyncio.to_thread(check)


async def test_dingtalk_card_callbacks_of_any_shape(
    everything: Client, clock: FakeClock, engine: str
) -> None:
    private = {"cardPrivateData": {"params": {"action": "approve", "token": "x"}}}
    click = {"outTrackId": "rh-c1-1", "userId": "manager1001", "corpId": "c", "content": ""}

    @fuzz_settings(engine)
    @given(
        click=mutated(click),
        content=st.one_of(mutated(private, [["cardPrivateData", "params"]]), json_values),
        keyed=st.booleans(),
    )
    @on_loop
    async def check(click: Any, content: Any, keyed: bool) -> None:
        if isinstance(click, dict) and "content" in click:
            click["content"] = json.dumps(content)
        path = card_path() if keyed else "/callbacks/dingtalk/card?key=guess"
        await post(everything, path, dumps(click))

    await asyncio.to_thread(check)


async def test_dingtalk_event_pushes_of_any_shape(
    everything: Client, clock: FakeClock, engine: str
) -> None:
    signer = DingtalkSigner(clock, FakeDingtalk())

    @fuzz_settings(engine)
    @given(event=json_values, sealed=st.booleans(), raw=st.binary(max_size=80))
    @on_loop
    async def check(event: Any, sealed: bool, raw: bytes) -> None:
        if sealed:
            query, body = signer.event(event)
        else:
            query, body = {"signature": "0" * 40, "timestamp": "1", "nonce": "n"}, raw
        await post(everything, EVENTS_PATH, body, params=query)

    await asyncio.to_thread(check)


# --- channels --------------------------------------------------------------------------

ITEM_PATHS = [["items", "sku"], ["items", "qty"], ["items", "unit_price"], ["buyer", "ref"]]


async def test_generic_bodies_of_any_shape(
    everything: Client, clock: FakeClock, engine: str
) -> None:
    now = clock.timestamp()
    order = {"event_id": "o-1", "shop": "main-store", "order_id": "SO1", "status": "paid",
             "items": [{"sku": "A", "qty": 1, "unit_price": "1.00"}], "version": "1"}  # fmt: skip

    @fuzz_settings(engine)
    @given(
        body=st.one_of(mutated(return_body(), ITEM_PATHS), mutated(order), json_values),
        path=st.sampled_from(["/webhooks/generic", "/webhooks/generic/orders"]),
        skew=st.sampled_from([0, 0, 0, 301, -301]),
    )
    @example(body=return_body(amount="1e999"), path="/webhooks/generic", skew=0)
    @example(body=return_body(external_id="a\x00b"), path="/webhooks/generic", skew=0)
    @on_loop
    async def check(body: Any, path: str, skew: int) -> None:
        raw = dumps(body)
        await post(everything, path, raw, headers=sign_generic("test-secret", raw, now + skew))

    await asyncio.to_thread(check)


async def test_shopify_signed_bodies_of_any_shape(
    everything: Client, clock: FakeClock, engine: str
) -> None:
    line = ["return_line_items", "fulfillment_line_item", "line_item"]
    paths = [["order", "id"], ["return_line_items", "quantity"], ["return_line_items", "id"],
             ["return_line_items", "return_reason_note"], line[:2], line, line + ["title"],
             line + ["price"], line + ["sku"]]  # fmt: skip

    @fuzz_settings(engine)
    @given(
        body=mutated(return_payload(), paths),
        topic=st.sampled_from(["returns/request", *TOPICS]),
    )
    @example(body={**return_payload(), "return_line_items": True}, topic="returns/request")
    @example(body={"id": 1, "order_id": 2, "transactions": 1}, topic="refunds/create")
    @example(
        body={**return_payload(), "updated_at": "0001-01-01T00:00+00:01"}, topic="returns/request"
    )
    @on_loop
    async def check(body: Any, topic: str) -> None:
        raw = dumps(body)
        await post(everything, "/webhooks/shopify", raw, headers=shopify_headers(raw, topic))

    await asyncio.to_thread(check)


async def test_shopify_headers_of_any_shape(everything: Client, engine: str) -> None:
    @fuzz_settings(engine)
    @given(
        body=st.one_of(st.just(return_payload()), json_values),
        headers=st.dictionaries(st.sampled_from(SHOPIFY_HEADERS), header_values, max_size=5),
        signed=st.booleans(),
    )
    @on_loop
    async def check(body: Any, headers: dict[str, str], signed: bool) -> None:
        raw = dumps(body)
        good = shopify_headers(raw, "returns/request")
        forged = {**good, **headers} if signed else headers
        await post(everything, "/webhooks/shopify", raw, headers=forged)

    await asyncio.to_thread(check)


async def test_douyin_pushes_of_any_shape(
    everything: Client, clock: FakeClock, engine: str
) -> None:
    data = {"aftersale_id": "7001", "shop_id": SHOP_ID, "aftersale_status": 6, "update_time": 1}
    element = {"tag": "101", "msg_id": "m-1", "data": json.dumps(data)}

    @fuzz_settings(engine)
    @given(
        body=st.one_of(st.lists(mutated(element), min_size=1, max_size=3), json_values),
        data=st.one_of(mutated(data), json_values),
        signed=st.booleans(),
    )
    @on_loop
    async def check(body: Any, data: Any, signed: bool) -> None:
        if isinstance(body, list) and body and isinstance(body[0], dict) and "data" in body[0]:
            body[0]["data"] = json.dumps(data)
        raw = dumps(body)
        headers = {"app-id": DOUYIN_KEY, "event-sign": push_sign(raw) if signed else "0" * 32}
        await post(everything, "/webhooks/douyin", raw, headers=headers)

    await asyncio.to_thread(check)


def test_the_log_check_sees_errors(caplog: pytest.LogCaptureFixture) -> None:
    """The property's log check is not vacuous: an ERROR record fails it."""
    import logging

    logging.getLogger("returnhub.test").error("boom")
    with pytest.raises(AssertionError):
        assert_no_errors(caplog)
    caplog.clear()
