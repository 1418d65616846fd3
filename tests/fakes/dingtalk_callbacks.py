"""What DingTalk POSTs to us, and the wiring that points an app at the fake DingTalk.

`DingtalkSigner` builds robot messages (text, picture, richText, audio, file) with
the `timestamp`/`sign` headers written out from the protocol (not imported from
the code under test), card-callback payloads as DingTalk sends them (`content` a
JSON string holding `cardPrivateData.params`), and event pushes sealed with
dingtalk-sdk's own `DingTalkCrypto` with the app key as owner key.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import hmac
import json
import secrets
from pathlib import Path
from typing import Any

from aiohttp import web
from dingtalk.crypto import DingTalkCrypto

from bot.app import create_app
from bot.platforms.dingtalk import callback_url
from bot.settings import DingtalkSettings, RoleRoute, Settings
from storage.db import Database
from tests.fakes.dingtalk import (
    APP_KEY,
    APP_SECRET,
    CORP_ID,
    EVENT_AES_KEY,
    EVENT_TOKEN,
    ROBOT_CODE,
    ROBOT_SECRET,
    ROBOT_TOKEN,
    TEMPLATE_ID,
    FakeDingtalk,
)
from tests.support import FakeClock, make_settings

PUBLIC_URL = "https://bot.example.com"


def dingtalk_settings(api_base: str, **overrides: Any) -> DingtalkSettings:
    """[dingtalk] pointing at the fake, signing like DingtalkSigner."""
    values: dict[str, Any] = {
        "app_key": APP_KEY,
        "app_secret": APP_SECRET,
        "robot_code": ROBOT_CODE,
        "card_template_id": TEMPLATE_ID,
        "event_token": EVENT_TOKEN,
        "event_aes_key": EVENT_AES_KEY,
        "api_base": api_base,
        "oapi_base": api_base,
        "robots": {"ops": ROBOT_TOKEN},
        "robot_secrets": {"ops": ROBOT_SECRET},
    }
    return DingtalkSettings(**{**values, **overrides})


def with_dingtalk(settings: Settings, api_base: str, **overrides: Any) -> Settings:
    server = dataclasses.replace(settings.server, public_url=PUBLIC_URL)
    return dataclasses.replace(
        settings, dingtalk=dingtalk_settings(api_base, **overrides), server=server
    )


def dingtalk_app(
    db: Database,
    tmp_path: Path,
    clock: FakeClock,
    api_base: str,
    *,
    roles: dict[str, RoleRoute] | None = None,
    settings: Settings | None = None,
    **overrides: Any,
) -> web.Application:
    """The app on `db` with [dingtalk] pointing at the fake, no console, clock injected."""
    base = settings or make_settings(tmp_path, db.url, console=False)
    configured = with_dingtalk(base, api_base, **overrides)
    if roles:
        configured = dataclasses.replace(configured, roles={**configured.roles, **roles})
    return create_app(configured, clock=clock, background=False)


def card_path() -> str:
    """The registered card-callback URL's path and query (what DingTalk POSTs to)."""
    return callback_url(PUBLIC_URL, APP_SECRET).removeprefix(PUBLIC_URL)


class DingtalkSigner:
    """Robot messages, card clicks and event pushes as DingTalk sends them."""

    def __init__(self, clock: FakeClock, fake: FakeDingtalk) -> None:
        self.clock, self.fake = clock, fake
        self._pushes = 0

    def headers(self, *, timestamp: int | None = None, secret: str = APP_SECRET) -> dict[str, str]:
        """Signed headers; each push a millisecond after the last, as DingTalk's differ."""
        self._pushes += 1
        now_ms = self.clock.timestamp() * 1000 + self._pushes
        ts = str(timestamp if timestamp is not None else now_ms)
        mac = hmac.new(secret.encode(), f"{ts}\n{secret}".encode(), hashlib.sha256)
        return {
            "timestamp": ts,
            "sign": base64.b64encode(mac.digest()).decode(),
            "Content-Type": "application/json; charset=utf-8",
        }

    def message(
        self,
        user: str,
        msgtype: str,
        body: dict[str, Any],
        *,
        msg_id: str | None = None,
        group: str | None = None,
        at_robot: bool = True,
        robot_code: str = ROBOT_CODE,
    ) -> dict[str, Any]:
        created = self.clock.timestamp() * 1000
        message: dict[str, Any] = {
            "msgtype": msgtype,
            **body,
            "msgId": msg_id or "msg" + secrets.token_hex(10),
            "createAt": created,
            "conversationType": "2" if group else "1",
            "conversationId": group or "cid" + secrets.token_hex(8),
            "senderId": "$:LWCP_v1:$" + secrets.token_hex(12),
            "senderNick": user,
            "senderCorpId": CORP_ID,
            "senderStaffId": user,
            "chatbotUserId": "$:LWCP_v1:$robot",
            "chatbotCorpId": CORP_ID,
            "robotCode": robot_code,
            "isAdmin": False,
        }
        if group:
            message["conversationTitle"] = "售后群"
            message["isInAtList"] = at_robot
        else:
            url, expires = self.fake.open_session(user)
            message["sessionWebhook"] = url
            message["sessionWebhookExpiredTime"] = expires
        return message

    def text(self, user: str, content: str, **kw: Any) -> dict[str, Any]:
        return self.message(user, "text", {"text": {"content": content}}, **kw)

    def picture(self, user: str, code: str, **kw: Any) -> dict[str, Any]:
        content = {"downloadCode": code, "pictureDownloadCode": "p" + code}
        return self.message(user, "picture", {"content": content}, **kw)

    def rich(self, user: str, parts: list[dict[str, Any]], **kw: Any) -> dict[str, Any]:
        return self.message(user, "richText", {"content": {"richText": parts}}, **kw)

    def click(
        self, user: str, out_track_id: str, action: str, *, token: str | None = None
    ) -> dict[str, Any]:
        """`user` clicks the `action` button of card `out_track_id` (its current token)."""
        if token is None:
            token = self.fake.cards[out_track_id]["params"]["token"]
        private = {"actionIds": [action], "params": {"action": action, "token": token}}
        return {
            "outTrackId": out_track_id,
            "userId": user,
            "corpId": CORP_ID,
            "spaceType": "IM",
            "spaceId": self.fake.cards[out_track_id]["space"]
            if out_track_id in self.fake.cards
            else "x",
            "extension": "{}",
            "content": json.dumps({"cardPrivateData": private}, ensure_ascii=False),
        }

    def event(
        self, event: dict[str, Any], *, owner: str = APP_KEY, timestamp: int | None = None
    ) -> tuple[dict[str, str], bytes]:
        """(query, body) of an event push, sealed with dingtalk-sdk's crypto."""
        crypto = DingTalkCrypto(EVENT_TOKEN, EVENT_AES_KEY, owner)
        ts = str(timestamp if timestamp is not None else self.clock.timestamp() * 1000)
        sealed = crypto.encrypt_message(
            json.dumps(event), nonce=secrets.token_hex(4), timestamp=ts
        )
        query = {"signature": sealed["msg_signature"], "timestamp": ts, "nonce": sealed["nonce"]}
        return query, json.dumps({"encrypt": sealed["encrypt"]}).encode()
