"""DingTalk robot messages and card callbacks (parsed JSON) -> neutral events.

The same JSON arrives over HTTP (`POST /callbacks/dingtalk`, `/callbacks/dingtalk/card`)
and in a Stream frame's `data`, so this module knows nothing about transport.

Robot messages: `text` (`text.content`), `picture` (`content.downloadCode`),
`richText` (`content.richText[]` of `{text}` and `{type: "picture", downloadCode}`)
and `audio` (its `recognition`, DingTalk's speech-to-text, read as text). Other
msgtypes are `Unsupported`: the route answers them with a polite chat reply. In a
group (`conversationType` "2") DingTalk only pushes messages that @-mention the
robot; one without `isInAtList` is ignored all the same.

Idempotency keys (DESIGN.md §6): `dingtalk:msg:<msgId>` (a richText message's parts:
`dingtalk:msg:<msgId>:<n>`); card clicks `dingtalk:card:<outTrackId>:<userId>:<action>`.

Card buttons (CONTRACT.md) send back params `{"action": …, "token": "${token}"}`,
where the card's one `token` variable holds each button's own signed token
("approve:<token>,reject:<token>,…", dingtalk_cards.py): the click's token is the
one for its action, and an action the card does not carry has none (the handler
then answers "该按钮无效或已过期").
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from bot import keys
from bot.events import CardAction, ChatMessage, ImageMessage, Sender
from bot.platforms.inbound import CallbackRejected, is_opaque
from bot.web.body import json_value

log = logging.getLogger(__name__)

NAME = "dingtalk"
TEXT_MAX = 4000
OPAQUE_MAX = 1024
USERID_MAX = 64  # staffId: DingTalk's userid, at most 64 characters
PAIR_SEPARATOR = ","
ACTION_SEPARATOR = ":"
WEBHOOK_PATH = "/robot/sendBySession"

Inbound = ChatMessage | ImageMessage


@dataclass(frozen=True, slots=True)
class Unsupported:
    """A message of a type the bot does not read (voice without text, video, file…)."""

    key: str
    sender: Sender
    msgtype: str


@dataclass(frozen=True, slots=True)
class Session:
    """The reply URL of a 1:1 chat and when it stops working (epoch ms)."""

    user_id: str
    url: str
    expires_ms: int


@dataclass(frozen=True, slots=True)
class RobotMessage:
    events: tuple[Inbound | Unsupported, ...]
    session: Session | None


def _str(data: dict[str, Any], name: str, *, limit: int = OPAQUE_MAX) -> str:
    value = data.get(name)
    if not isinstance(value, str) or not is_opaque(value, limit):
        raise CallbackRejected(400, f"missing or malformed {name}")
    return value


def _object(value: Any, name: str) -> dict[str, Any]:
    if isinstance(value, str):  # card callbacks carry JSON inside strings
        try:
            value = json_value(value)
        except ValueError:
            raise CallbackRejected(400, f"{name} is not JSON") from None
    if not isinstance(value, dict):
        raise CallbackRejected(400, f"{name} is not an object")
    return value


def parse_message(data: dict[str, Any], *, robot_code: str) -> RobotMessage:
    """The events of one robot message; raises CallbackRejected (4xx) when refused."""
    if data.get("robotCode") != robot_code:
        raise CallbackRejected(403, "robotCode is not this app's robot")
    msg_id = _str(data, "msgId")
    user = _str(data, "senderStaffId", limit=USERID_MAX)
    sender = Sender(NAME, user)
    conversation = str(data.get("conversationType", ""))
    if conversation not in ("1", "2"):
        raise CallbackRejected(400, "malformed conversationType")
    if conversation == "2" and data.get("isInAtList") is not True:
        log.info("dingtalk group message %s without an @ to the robot ignored", msg_id)
        return RobotMessage((), None)
    chat_id = str(data.get("conversationId") or "")[:128] if conversation == "2" else ""
    msgtype = data.get("msgtype")
    key = keys.key(NAME, "msg", msg_id)
    events: tuple[Inbound | Unsupported, ...]
    if msgtype == "text":
        text = _object(data.get("text"), "text").get("content")
        if not isinstance(text, str):
            raise CallbackRejected(400, "text has no content")
        events = (ChatMessage(key, sender, text.strip()[:TEXT_MAX], chat_id),)
    elif msgtype == "picture":
        code = _str(_object(data.get("content"), "content"), "downloadCode")
        events = (ImageMessage(key, sender, code, chat_id),)
    elif msgtype == "richText":
        events = _rich(_object(data.get("content"), "content"), msg_id, sender, chat_id)
    elif msgtype == "audio" and isinstance(
        text := _object(data.get("content"), "content").get("recognition"), str
    ):
        events = (ChatMessage(key, sender, text.strip()[:TEXT_MAX], chat_id),)
    else:
        events = (Unsupported(key, sender, str(msgtype)[:32]),)
    return RobotMessage(events, _session(data, user) if conversation == "1" else None)


def _rich(
    content: dict[str, Any], msg_id: str, sender: Sender, chat_id: str
) -> tuple[Inbound | Unsupported, ...]:
    parts = content.get("richText")
    if not isinstance(parts, list):
        raise CallbackRejected(400, "richText is not a list")
    texts: list[str] = []
    events: list[Inbound | Unsupported] = []
    for part in parts:
        if not isinstance(part, dict):
            raise CallbackRejected(400, "richText part is not an object")
        if part.get("type") == "picture":
            code = _str(part, "downloadCode")
            key = keys.key(NAME, "msg", msg_id, str(len(events) + 1))
            events.append(ImageMessage(key, sender, code, chat_id))
        elif isinstance(part.get("text"), str):
            texts.append(part["text"])
    text = "".join(texts).strip()
    if text:  # the text first: a waybill typed with the photo is scanned before it lands
        events.insert(0, ChatMessage(keys.key(NAME, "msg", msg_id, "0"), sender, text, chat_id))
    if not events:
        raise CallbackRejected(400, "richText has neither text nor pictures")
    return tuple(events)


def _session(data: dict[str, Any], user: str) -> Session | None:
    url, expires = data.get("sessionWebhook"), data.get("sessionWebhookExpiredTime")
    if not isinstance(url, str) or not isinstance(expires, int) or len(url) > 2048:
        return None
    return Session(user, url, expires)


def parse_card_callback(data: dict[str, Any]) -> CardAction:
    """A click on one of our cards; raises CallbackRejected (400) when malformed."""
    out_track_id = _str(data, "outTrackId", limit=128)
    user = _str(data, "userId", limit=USERID_MAX)
    content = _object(data.get("content"), "content")
    private = content.get("cardPrivateData")
    params = private.get("params") if isinstance(private, dict) else None
    if not isinstance(params, dict):
        raise CallbackRejected(400, "content has no cardPrivateData.params")
    action, tokens = params.get("action"), params.get("token")
    if not isinstance(action, str) or not is_opaque(action, 32):
        raise CallbackRejected(400, "missing or malformed params.action")
    if not isinstance(tokens, str) or len(tokens) > 4 * OPAQUE_MAX:
        raise CallbackRejected(400, "missing or malformed params.token")
    reason = params.get("reason")
    return CardAction(
        key=keys.key(NAME, "card", out_track_id, user, action),
        sender=Sender(NAME, user),
        token=token_for(tokens, action),
        reason=reason.strip()[:200] if isinstance(reason, str) else "",
    )


def join_tokens(tokens: dict[str, str]) -> str:
    """The card's `token` variable: each action with its button's token."""
    return PAIR_SEPARATOR.join(f"{a}{ACTION_SEPARATOR}{t}" for a, t in tokens.items())


def token_for(tokens: str, action: str) -> str:
    """The token of `action` in a card's `token` variable, or "" when it has none."""
    for pair in tokens.split(PAIR_SEPARATOR):
        name, _, token = pair.partition(ACTION_SEPARATOR)
        if name == action:
            return token
    return ""
