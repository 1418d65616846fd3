"""JSON nested past the parser's depth, on every route and reader that decodes JSON
from outside: json.loads raises RecursionError, which is no ValueError, and six
routes answered 500 with a traceback. The DingTalk event push did so before its
signature was checked, so anyone could fill the log. Now bot/web/body.py
`json_value` makes it a ValueError, and each route's 400."""

from __future__ import annotations

import json

import pytest
from dingtalk.crypto import DingTalkCrypto

from bot.channels import taobao_map
from bot.platforms.dingtalk import EVENTS_PATH
from bot.platforms.dingtalk_stream_protocol import Frame
from tests.fakes.dingtalk import APP_KEY as DINGTALK_KEY
from tests.fakes.dingtalk import EVENT_AES_KEY, EVENT_TOKEN, FakeDingtalk
from tests.fakes.dingtalk_callbacks import DingtalkSigner, card_path
from tests.fakes.douyin import APP_KEY as DOUYIN_KEY
from tests.fakes.douyin import push_sign
from tests.security.endpoints import shopify_headers
from tests.security.test_fuzz_webhooks import post
from tests.support import Client, FakeClock, sign_generic

DEEP = "[" * 20_000 + "]" * 20_000  # 40 KB: under every body bound, past the parser's depth


@pytest.mark.usefixtures("errors")
async def test_json_nested_past_the_parsers_depth_is_a_400_everywhere(
    everything: Client, clock: FakeClock
) -> None:
    signer = DingtalkSigner(clock, FakeDingtalk(clock=lambda: clock.timestamp()))
    query, _ = signer.event({"EventType": "check_url"})
    crypto = DingTalkCrypto(EVENT_TOKEN, EVENT_AES_KEY, DINGTALK_KEY)
    inner = crypto.encrypt_message(
        DEEP[:6000] + DEEP[-6000:], nonce="abcd", timestamp=query["timestamp"]
    )
    sealed_query = {"signature": inner["msg_signature"], "timestamp": query["timestamp"],
                    "nonce": inner["nonce"]}  # fmt: skip
    click = json.dumps({"outTrackId": "rh-c1-1", "userId": "manager1001", "content": DEEP})
    push = json.dumps([{"tag": "101", "msg_id": "m-1", "data": DEEP}]).encode()
    deep = DEEP.encode()
    requests: list[tuple[str, bytes, dict[str, str], dict[str, str]]] = [
        ("/callbacks/dingtalk", deep, {}, signer.headers()),
        (card_path(), deep, {}, {}),
        (card_path(), click.encode(), {}, {}),
        (EVENTS_PATH, deep, query, {}),
        (EVENTS_PATH, json.dumps({"encrypt": inner["encrypt"]}).encode(), sealed_query, {}),
        ("/webhooks/douyin", push, {}, {"app-id": DOUYIN_KEY, "event-sign": push_sign(push)}),
        ("/webhooks/douyin", deep, {}, {"app-id": DOUYIN_KEY, "event-sign": push_sign(deep)}),
        ("/webhooks/shopify", deep, {}, shopify_headers(deep, "returns/request")),
        *((path, deep, {}, sign_generic("test-secret", deep, clock.timestamp()))
          for path in ("/webhooks/generic", "/webhooks/generic/orders")),
    ]  # fmt: skip
    for path, body, params, headers in requests:
        assert await post(everything, path, body, params=params, headers=headers) == 400, path


def test_deep_json_in_a_stream_frame_or_a_tmc_message_is_a_value_error() -> None:
    with pytest.raises(ValueError):
        Frame.parse(DEEP)
    with pytest.raises(ValueError):
        Frame("CALLBACK", "t", "m", DEEP).payload()
    with pytest.raises(ValueError):
        taobao_map.notice({"topic": next(iter(taobao_map.REFUND_TOPICS)), "content": DEEP})
