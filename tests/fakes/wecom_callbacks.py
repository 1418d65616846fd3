"""What WeCom sends to our callback, and the wiring that points an app at the fake.

`CallbackSigner` builds the plaintext XML of a text, image or template_card_event
message and encrypts and signs it with wechatpy's `WeChatCrypto` (the real
algorithm, and not the code under test), as the POST query and body; it also
builds the admin console's GET URL-check query. `CallbackSigner.click` is a member
clicking a card the fake sent, with the fresh ResponseCode WeCom gives every click
(also on a card whose own code was used or has expired).
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
import secrets
from collections.abc import Callable
from pathlib import Path

import aiohttp
from aiohttp import web
from wechatpy.enterprise.crypto import WeChatCrypto

from bot.app import create_app
from bot.appkeys import DISPATCH, WORKER
from bot.platforms.wecom_client import WecomClient
from bot.settings import PhotoSettings, Settings, WecomSettings
from storage.db import Database
from tests.fakes.wecom import AES_KEY, AGENT_ID, CORP_ID, SECRET, TOKEN, FakeWecom
from tests.support import FakeClock, make_settings


def with_wecom(settings: Settings, api_base: str) -> Settings:
    """`settings` with [wecom] pointing at the fake and signing like CallbackSigner."""
    wecom = WecomSettings(
        corp_id=CORP_ID,
        agent_id=AGENT_ID,
        secret=SECRET,
        token=TOKEN,
        encoding_aes_key=AES_KEY,
        api_base=api_base,
    )
    return dataclasses.replace(settings, wecom=wecom)


def api_client(api_base: str, http: aiohttp.ClientSession, *, secret: str = SECRET) -> WecomClient:
    """A `WecomClient` for the test app's credentials, talking to `api_base`."""
    settings = WecomSettings(corp_id=CORP_ID, agent_id=AGENT_ID, secret=secret, api_base=api_base)
    return WecomClient(settings, lambda: http)


def wecom_app(
    db: Database,
    tmp_path: Path,
    clock: FakeClock,
    api_base: str,
    *,
    robots: dict[str, str] | None = None,
    photos: PhotoSettings | None = None,
) -> web.Application:
    """The app on `db` with [wecom] pointing at the fake, no console, clock injected."""
    settings = with_wecom(make_settings(tmp_path, db.url, console=False), api_base)
    if robots:
        wecom = dataclasses.replace(settings.wecom, robots=robots)
        settings = dataclasses.replace(settings, wecom=wecom)
    if photos:
        settings = dataclasses.replace(settings, photos=photos)
    return create_app(settings, clock=clock, background=False)


async def settle(app: web.Application) -> None:
    """Wait for the handlers callbacks submitted (acked before they ran), then deliver
    the outbox through the fake; twice, since a delivery (a photo downloaded) can hand
    the workflow an event whose replies are delivered in turn."""
    for _ in range(2):
        await app[DISPATCH].idle()
        await app[WORKER].drain()


def _cdata(value: str) -> str:
    return f"<![CDATA[{value}]]>"


class CallbackSigner:
    """Encrypts and signs callbacks like WeCom does (wechatpy's crypto, not ours)."""

    def __init__(
        self,
        now: Callable[[], int],
        *,
        token: str = TOKEN,
        aes_key: str = AES_KEY,
        corp_id: str = CORP_ID,
        agent_id: int = AGENT_ID,
    ) -> None:
        self.now, self.token, self.aes_key = now, token, aes_key
        self.corp_id, self.agent_id = corp_id, agent_id

    def text(self, user: str, content: str, *, msg_id: int) -> str:
        return self._message(user, "text", f"<Content>{_cdata(content)}</Content>", msg_id)

    def image(self, user: str, media_id: str, *, msg_id: int) -> str:
        extra = (
            f"<PicUrl>{_cdata('https://wework.qpic.cn/' + media_id)}</PicUrl>"
            f"<MediaId>{_cdata(media_id)}</MediaId>"
        )
        return self._message(user, "image", extra, msg_id)

    def card_event(
        self,
        user: str,
        event_key: str,
        task_id: str,
        response_code: str,
        *,
        created: int | None = None,
        selected: dict[str, list[str]] | None = None,
    ) -> str:
        items = "".join(
            f"<SelectedItem><QuestionKey>{_cdata(q)}</QuestionKey><OptionIds>"
            + "".join(f"<OptionId>{_cdata(o)}</OptionId>" for o in options)
            + "</OptionIds></SelectedItem>"
            for q, options in (selected or {}).items()
        )
        return (
            f"<xml><ToUserName>{_cdata(self.corp_id)}</ToUserName>"
            f"<FromUserName>{_cdata(user)}</FromUserName>"
            f"<CreateTime>{created or self.now()}</CreateTime>"
            f"<MsgType>{_cdata('event')}</MsgType><Event>{_cdata('template_card_event')}</Event>"
            f"<EventKey>{_cdata(event_key)}</EventKey><TaskId>{_cdata(task_id)}</TaskId>"
            f"<CardType>{_cdata('button_interaction')}</CardType>"
            f"<ResponseCode>{_cdata(response_code)}</ResponseCode>"
            f"<AgentID>{self.agent_id}</AgentID>"
            + (f"<SelectedItems>{items}</SelectedItems>" if items else "")
            + "</xml>"
        )

    def click(
        self,
        fake: FakeWecom,
        user: str,
        event_key: str,
        *,
        card_of: str | None = None,
        task_id: str | None = None,
        created: int | None = None,
        code: str | None = None,
    ) -> tuple[str, str]:
        """(xml, code): `user` clicks `event_key` on the last card `card_of` (default:
        `user`) received, or on card `task_id`; `code` is the fresh ResponseCode the
        fake issued for this click (its text chosen by `code=`), valid 72 h on the
        fake's clock."""
        if task_id is None:
            task_id = fake.cards_to(card_of or user)[-1]["task_id"]
        code = fake.click_code(user, task_id, code=code)
        return self.card_event(user, event_key, task_id, code, created=created), code

    def _message(self, user: str, kind: str, extra: str, msg_id: int) -> str:
        return (
            f"<xml><ToUserName>{_cdata(self.corp_id)}</ToUserName>"
            f"<FromUserName>{_cdata(user)}</FromUserName><CreateTime>{self.now()}</CreateTime>"
            f"<MsgType>{_cdata(kind)}</MsgType>{extra}<MsgId>{msg_id}</MsgId>"
            f"<AgentID>{self.agent_id}</AgentID></xml>"
        )

    def seal(
        self,
        inner: str,
        *,
        timestamp: int | None = None,
        nonce: str | None = None,
        aes_key: str | None = None,
        receive_id: str | None = None,
    ) -> tuple[dict[str, str], bytes]:
        """(query, body) of the POST; `aes_key`/`receive_id` forge a wrong key or corp."""
        crypto = WeChatCrypto(self.token, aes_key or self.aes_key, receive_id or self.corp_id)
        ts, nonce = str(timestamp or self.now()), nonce or secrets.token_hex(8)
        sealed = crypto.encrypt_message(inner, nonce, ts)
        encrypt = re.search(r"<Encrypt><!\[CDATA\[(.*?)\]\]></Encrypt>", sealed)
        signature = re.search(r"<MsgSignature><!\[CDATA\[(.*?)\]\]></MsgSignature>", sealed)
        assert encrypt and signature
        body = (
            f"<xml><ToUserName>{_cdata(self.corp_id)}</ToUserName>"
            f"<AgentID>{_cdata(str(self.agent_id))}</AgentID>"
            f"<Encrypt>{_cdata(encrypt.group(1))}</Encrypt></xml>"
        )
        query = {"msg_signature": signature.group(1), "timestamp": ts, "nonce": nonce}
        return query, body.encode()

    def signed_raw(self, encrypt: str, *, timestamp: int | None = None) -> dict[str, str]:
        """A correct signature over an arbitrary `encrypt` (for malformed-body tests)."""
        ts, nonce = str(timestamp or self.now()), secrets.token_hex(8)
        parts = sorted(p.encode() for p in (self.token, ts, nonce, encrypt))
        signature = hashlib.sha1(b"".join(parts)).hexdigest()  # noqa: S324
        return {"msg_signature": signature, "timestamp": ts, "nonce": nonce}

    def url_check(self, echo: str, *, timestamp: int | None = None) -> dict[str, str]:
        """The GET query of the admin console's URL check, echostr encrypting `echo`."""
        crypto = WeChatCrypto(self.token, self.aes_key, self.corp_id)
        ts, nonce = str(timestamp or self.now()), secrets.token_hex(8)
        sealed = crypto.encrypt_message(echo, nonce, ts)
        encrypt = re.search(r"<Encrypt><!\[CDATA\[(.*?)\]\]></Encrypt>", sealed)
        signature = re.search(r"<MsgSignature><!\[CDATA\[(.*?)\]\]></MsgSignature>", sealed)
        assert encrypt and signature
        return {
            "msg_signature": signature.group(1),
            "timestamp": ts,
            "nonce": nonce,
            "echostr": encrypt.group(1),
        }
