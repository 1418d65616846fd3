"""The requests a bench round replays, built and signed before the round starts.

Generic webhooks are signed as CONTRACT.md says (HMAC-SHA256 over
`timestamp "." body`); WeCom callbacks are encrypted and signed with wechatpy's
`WeChatCrypto`, the algorithm WeCom itself uses. Every request is distinct (its
own event id or MsgId) unless a round is about duplicates.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import urlencode

from wechatpy.enterprise.crypto import WeChatCrypto

from bot.bench import procs
from bot.bench.load import Req

# One of each default tier: auto, CS lead, ops director (with history), + finance.
AMOUNTS = ("29.90", "132.00", "2880.00", "6000.00")
JSON = (("Content-Type", "application/json"),)


def generic(prefix: str, count: int, now: int, *, amounts: Iterable[str] = AMOUNTS) -> list[Req]:
    """`count` distinct signed return requests, tiers mixed in turn."""
    tiers = tuple(amounts)
    out = []
    for n in range(count):
        amount = tiers[n % len(tiers)]
        body = json.dumps(
            {
                "event_id": f"{prefix}-evt-{n}",
                "shop": "main-store",
                "external_id": f"{prefix}-AS{n:08d}",
                "order_id": f"{prefix}-SO{n:08d}",
                "kind": "refund_only",
                "status": "requested",
                "amount": amount,
                "currency": "CNY",
                "reason_code": "quality.defect",
                "reason_text": "开关失灵",
                "buyer": {"ref": f"buyer-{n % 20_000}", "nick": "喵星人"},
                "items": [
                    {"sku": "FEEDER-2", "name": "自动喂食器", "qty": 1, "unit_price": amount}
                ],
                "occurred_at": "2026-11-21T10:00:00+08:00",
                "version": "1",
            },
            ensure_ascii=False,
        ).encode()
        out.append(signed_generic(body, now))
    return out


def signed_generic(body: bytes, now: int) -> Req:
    ts = str(now)
    mac = hmac.new(procs.GENERIC_SECRET.encode(), ts.encode() + b"." + body, hashlib.sha256)
    headers = (
        *JSON,
        ("X-Returnhub-Timestamp", ts),
        ("X-Returnhub-Signature", mac.hexdigest()),
    )
    return Req("POST", "/webhooks/generic", headers, body)


def _cdata(value: str) -> str:
    return f"<![CDATA[{value}]]>"


class WecomSealer:
    """Encrypts and signs callbacks for the bench's WeCom app, as WeCom does."""

    def __init__(self) -> None:
        self.crypto = WeChatCrypto(procs.WECOM_TOKEN, procs.WECOM_AES_KEY, procs.WECOM_CORP_ID)

    def seal(self, inner: str, now: int) -> Req:
        ts, nonce = str(now), secrets.token_hex(8)
        sealed = self.crypto.encrypt_message(inner, nonce, ts)
        encrypt = re.search(r"<Encrypt><!\[CDATA\[(.*?)\]\]></Encrypt>", sealed)
        signature = re.search(r"<MsgSignature><!\[CDATA\[(.*?)\]\]></MsgSignature>", sealed)
        if not (encrypt and signature):
            raise RuntimeError("wechatpy returned no Encrypt/MsgSignature")
        body = (
            f"<xml><ToUserName>{_cdata(procs.WECOM_CORP_ID)}</ToUserName>"
            f"<AgentID>{_cdata(str(procs.WECOM_AGENT_ID))}</AgentID>"
            f"<Encrypt>{_cdata(encrypt.group(1))}</Encrypt></xml>"
        )
        query = urlencode({"msg_signature": signature.group(1), "timestamp": ts, "nonce": nonce})
        return Req(
            "POST", f"/callbacks/wecom?{query}", (("Content-Type", "text/xml"),), body.encode()
        )

    def _head(self, user: str, now: int) -> str:
        return (
            f"<xml><ToUserName>{_cdata(procs.WECOM_CORP_ID)}</ToUserName>"
            f"<FromUserName>{_cdata(user)}</FromUserName><CreateTime>{now}</CreateTime>"
        )

    def texts(self, user: str, text: str, count: int, now: int, first_id: int) -> list[Req]:
        """`count` text messages from `user`, each with its own MsgId."""
        return [
            self.seal(
                self._head(user, now)
                + f"<MsgType>{_cdata('text')}</MsgType><Content>{_cdata(text)}</Content>"
                + f"<MsgId>{first_id + n}</MsgId><AgentID>{procs.WECOM_AGENT_ID}</AgentID></xml>",
                now,
            )
            for n in range(count)
        ]

    def click(self, click: Click, now: int) -> Req:
        return self.seal(
            self._head(click.user, now)
            + f"<MsgType>{_cdata('event')}</MsgType><Event>{_cdata('template_card_event')}</Event>"
            + f"<EventKey>{_cdata(click.token)}</EventKey><TaskId>{_cdata(click.task_id)}</TaskId>"
            + f"<CardType>{_cdata('button_interaction')}</CardType>"
            + f"<ResponseCode>{_cdata(click.code)}</ResponseCode>"
            + f"<AgentID>{procs.WECOM_AGENT_ID}</AgentID></xml>",
            now,
        )


@dataclass(frozen=True, slots=True)
class Click:
    """The 同意 button of one card, as its recipient would press it."""

    card_id: int
    case_id: str
    user: str
    token: str
    task_id: str
    code: str
