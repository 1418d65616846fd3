"""Every inbound endpoint as a table: a request each accepts, signed as the real
sender signs it (the fakes' signers, not our code), and what a forger can do to it.

`forged` is signed with a key the endpoint does not hold; `tampered` keeps a good
signature over a changed body; `stale` is correctly signed outside the replay
window. A protocol without that attack surface has None, and says why in `note`
(docs/security.md carries the notes): DingTalk's robot sign covers the timestamp,
not the body; Shopify and Douyin sign no timestamp, their replays are answered by
the event id's dedupe.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from tests.fakes.dingtalk import FakeDingtalk
from tests.fakes.dingtalk_callbacks import DingtalkSigner, card_path
from tests.fakes.douyin import APP_KEY as DOUYIN_KEY
from tests.fakes.douyin import SHOP_ID, push_sign
from tests.fakes.shopify import DOMAIN, return_payload, webhook_hmac
from tests.fakes.wecom_callbacks import CallbackSigner
from tests.support import GENERIC_SECRET, FakeClock, return_body, sign_generic


@dataclass(frozen=True)
class Req:
    method: str
    path: str
    body: bytes = b""
    params: dict[str, str] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Endpoint:
    name: str
    good: Callable[[], Req]
    forged: Callable[[], Req]
    tampered: Callable[[], Req] | None
    stale: Callable[[], Req] | None
    note: str = ""


SHOPIFY_HEADERS = ["X-Shopify-Topic", "X-Shopify-Shop-Domain", "X-Shopify-Event-Id",
                   "X-Shopify-Webhook-Id", "X-Shopify-Triggered-At"]  # fmt: skip


def shopify_headers(raw: bytes, topic: str) -> dict[str, str]:
    return {
        "X-Shopify-Topic": topic, "X-Shopify-Shop-Domain": DOMAIN,
        "X-Shopify-Event-Id": str(uuid.uuid4()), "X-Shopify-Triggered-At": "2026-11-23T02:00:00Z",
        "X-Shopify-Hmac-Sha256": webhook_hmac(raw),
    }  # fmt: skip


def _flip(body: bytes, at: int = -40) -> bytes:
    """One byte of `body` changed (inside a signed value, away from the XML's end)."""
    raw = bytearray(body)
    raw[at] = ord("A") if raw[at] != ord("A") else ord("B")
    return bytes(raw)


def endpoints(clock: FakeClock) -> list[Endpoint]:
    wecom = CallbackSigner(clock.timestamp)
    wrong_wecom = CallbackSigner(clock.timestamp, token="not-the-token")
    dingtalk = DingtalkSigner(clock, FakeDingtalk(clock=lambda: clock.timestamp()))
    hour_ago = clock.timestamp() - 3601
    n = iter(range(1, 10**6))

    def wecom_text(signer: CallbackSigner = wecom, **kw: Any) -> Req:
        query, body = signer.seal(wecom.text("xiaomei", "/帮助", msg_id=next(n)), **kw)
        return Req("POST", "/callbacks/wecom", body, query)

    def wecom_check(signer: CallbackSigner = wecom, **kw: Any) -> Req:
        return Req("GET", "/callbacks/wecom", params=signer.url_check("echo-1", **kw))

    def robot(secret: str | None = None, timestamp: int | None = None) -> Req:
        headers = dingtalk.headers(**({"secret": secret} if secret else {}), timestamp=timestamp)
        body = json.dumps(dingtalk.text("staff2003", "/帮助")).encode()
        return Req("POST", "/callbacks/dingtalk", body, headers=headers)

    def card(path: str | None = None) -> Req:
        click = {"outTrackId": "rh-c1-1", "userId": "manager1001", "corpId": "c",
                 "content": json.dumps({"cardPrivateData": {"params": {
                     "action": "approve", "token": "x"}}})}  # fmt: skip
        return Req("POST", path or card_path(), json.dumps(click).encode())

    def event(timestamp: int | None = None) -> Req:
        query, body = dingtalk.event({"EventType": "check_url"}, timestamp=timestamp)
        return Req("POST", "/callbacks/dingtalk/events", body, query)

    def generic(path: str, body: dict[str, Any], secret: str = GENERIC_SECRET, ts: int = 0) -> Req:
        raw = json.dumps(body).encode()
        headers = sign_generic(secret, raw, ts or clock.timestamp())
        return Req("POST", path, raw, headers=headers)

    order = {"event_id": "oms-ord-1", "shop": "main-store", "order_id": "SO-1",
             "buyer": {"ref": "buyer-8812", "nick": "喵星人"}, "status": "paid",
             "amount": "199.00", "occurred_at": "2026-11-01T10:00:00+08:00"}  # fmt: skip

    def shopify(secret: str | None = None) -> Req:
        raw = json.dumps(return_payload()).encode()
        mac = webhook_hmac(raw, *([secret] if secret else []))
        headers = {"X-Shopify-Topic": "returns/request", "X-Shopify-Shop-Domain": DOMAIN,
                   "X-Shopify-Event-Id": "ev-1", "Content-Type": "application/json",
                   "X-Shopify-Hmac-Sha256": mac}  # fmt: skip
        return Req("POST", "/webhooks/shopify", raw, headers=headers)

    def douyin(secret: str | None = None) -> Req:
        data = {"aftersale_id": "7001", "shop_id": int(SHOP_ID), "aftersale_status": 6,
                "update_time": 1_800_000_000}  # fmt: skip
        raw = json.dumps([{"tag": "101", "msg_id": "m-1", "data": json.dumps(data)}]).encode()
        sign = push_sign(raw, DOUYIN_KEY, *([secret] if secret else []))
        headers = {"app-id": DOUYIN_KEY, "event-sign": sign, "Content-Type": "application/json"}
        return Req("POST", "/webhooks/douyin", raw, headers=headers)

    def tamper(build: Callable[[], Req], at: int = -40) -> Callable[[], Req]:
        return lambda: (lambda r: replace(r, body=_flip(r.body, at)))(build())

    return [
        Endpoint("wecom callback", wecom_text, lambda: wecom_text(wrong_wecom),
                 tamper(wecom_text), lambda: wecom_text(timestamp=hour_ago)),
        Endpoint("wecom url check", wecom_check, lambda: wecom_check(wrong_wecom), None,
                 lambda: wecom_check(timestamp=hour_ago),
                 note="a GET: the echostr is what is signed"),
        Endpoint("dingtalk robot", robot, lambda: robot(secret="not-the-secret"), None,
                 lambda: robot(timestamp=(hour_ago - 1) * 1000),
                 note="DingTalk signs timestamp+secret, not the body; a (timestamp, sign) "
                      "pair is accepted once"),
        Endpoint("dingtalk card", card, lambda: card("/callbacks/dingtalk/card?key=guess"),
                 None, None,
                 note="DingTalk signs no card callback: the registered URL carries a key "
                      "derived from the app secret, and each button a signed token"),
        Endpoint("dingtalk events", event,
                 lambda: replace(event(), params={**event().params, "signature": "0" * 40}),
                 tamper(event, -10), lambda: event(timestamp=hour_ago * 1000)),
        Endpoint("generic returns", lambda: generic("/webhooks/generic", return_body()),
                 lambda: generic("/webhooks/generic", return_body(), secret="wrong"),
                 tamper(lambda: generic("/webhooks/generic", return_body()), 30),
                 lambda: generic("/webhooks/generic", return_body(), ts=hour_ago)),
        Endpoint("generic orders", lambda: generic("/webhooks/generic/orders", order),
                 lambda: generic("/webhooks/generic/orders", order, secret="wrong"),
                 tamper(lambda: generic("/webhooks/generic/orders", order), 30),
                 lambda: generic("/webhooks/generic/orders", order, ts=hour_ago)),
        Endpoint("shopify", shopify, lambda: shopify("wrong"), tamper(shopify, 30), None,
                 note="Shopify signs no timestamp: a replay is answered by "
                      "X-Shopify-Event-Id's dedupe"),
        Endpoint("douyin", douyin, lambda: douyin("wrong"), tamper(douyin, 30), None,
                 note="Douyin signs no timestamp: a replay is answered by msg_id's dedupe"),
    ]  # fmt: skip
