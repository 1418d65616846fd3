"""What the real WeCom API validates, for the fake server (tests/fakes/wecom.py).

Each check raises `Refusal(errcode, errmsg)` with a real WeCom errcode where the
docs give one (40058 "不合法的参数" otherwise). The fake must be as strict as
WeCom: a request it accepts and WeCom refuses is a bug the tests cannot see.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from typing import Any

from aiohttp import web

INVALID_PARAM = 40058  # a real WeCom code ("不合法的参数"); used for card validation
INVALID_MEDIA = 40007
INVALID_MSGTYPE = 40008
# "taskid has existed or empty or exceed max len" (WeCom developer community, a real
# answer to message/send quoted verbatim): one code for a reused, empty or >128-byte id.
TASK_ID_EXISTS = 42014
# A used or expired response_code (update_template_card, doc path/94945 via
# im-protocols.md section 7a); the errmsg wording is UNCONFIRMED.
CODE_INVALID = 60140
# "not allow to access from your ip, hint: [...], from ip: <ip>, more info at ..." (errcode
# page path/90455; many user reports quote this errmsg): the trusted-IP list (企业可信IP).
IP_NOT_TRUSTED = 60020
# An app without a callback URL sending a callback-capable card (im-protocols.md 7a);
# the errmsg wording is UNCONFIRMED.
NO_CALLBACK_URL = 43012
# appchat/send to a chatid this app did not create; code from the global errcode list,
# UNCONFIRMED against a live answer.
CHAT_NOT_FOUND = 86003
CONTENT_TOO_LONG = 45002
TEXT_BYTES = 2048  # message/send text and markdown, robot text
ROBOT_MARKDOWN_BYTES = 4096
RANGE_MAX = 20 << 20  # media/get: one Range chunk at most 20 MB
_TASK_ID = re.compile(r"[0-9A-Za-z_\-@]{1,128}")
CARD_TYPES = {
    "text_notice",
    "news_notice",
    "button_interaction",
    "vote_interaction",
    "multiple_interaction",
}
INTERACTIVE = {"button_interaction", "vote_interaction", "multiple_interaction"}
ROBOT_TYPES = ("text", "markdown", "image", "news", "file", "template_card")
# appchat/send (doc path/90248): no template_card, no miniprogram_notice.
APPCHAT_TYPES = (
    "text",
    "image",
    "voice",
    "video",
    "file",
    "textcard",
    "news",
    "mpnews",
    "markdown",
)


class Refusal(Exception):
    def __init__(self, errcode: int, errmsg: str) -> None:
        super().__init__(errmsg)
        self.errcode, self.errmsg = errcode, errmsg


def check_content(content: Any, limit: int) -> None:
    """`{"content": …}` of a text or markdown message: present, UTF-8 within `limit` bytes."""
    text = content.get("content") if isinstance(content, dict) else None
    if not isinstance(text, str) or not text:
        raise Refusal(44004, "empty content")
    if len(text.encode()) > limit:
        raise Refusal(CONTENT_TOO_LONG, f"content size out of limit {limit}")


def check_appchat(body: Any) -> None:
    """appchat/send: a msgtype group chats take; text within 2048 bytes, markdown too."""
    kind = body.get("msgtype")
    if kind not in APPCHAT_TYPES:
        raise Refusal(INVALID_MSGTYPE, "invalid message type")
    if kind in ("text", "markdown"):
        check_content(body.get(kind), TEXT_BYTES)
    elif not isinstance(body.get(kind), dict):
        raise Refusal(INVALID_PARAM, f"{kind} required")


def check_robot(body: Any) -> None:
    """webhook/send: a known msgtype; text within 2048 bytes, markdown within 4096."""
    kind = body.get("msgtype") if isinstance(body, dict) else None
    if kind not in ROBOT_TYPES:
        raise Refusal(INVALID_MSGTYPE, "invalid message type")
    if kind == "text":
        check_content(body.get("text"), TEXT_BYTES)
    elif kind == "markdown":
        check_content(body.get("markdown"), ROBOT_MARKDOWN_BYTES)
    elif kind == "image":
        check_robot_image(body.get("image"))


ROBOT_IMAGE_BYTES = 2 << 20  # webhook image: the raw picture at most 2 MB
IMAGE_TOO_BIG = 40009  # "图片文件大小不能超过2M" (UNCONFIRMED which code the webhook uses)
MD5_MISMATCH = 301019  # "md5 of the image does not match" (UNCONFIRMED code)
APP_IMAGE_BYTES = 10 << 20  # media/upload type=image: at most 10 MB


def image_kind(raw: bytes) -> str | None:
    """JPG or PNG by their magic bytes, the only pictures WeCom takes."""
    if raw.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    return "jpg" if raw.startswith(b"\xff\xd8\xff") else None


def check_robot_image(image: Any) -> bytes:
    """webhook image: base64 of a JPG/PNG of at most 2 MB, and the md5 of those bytes."""
    if not isinstance(image, dict) or not isinstance(image.get("base64"), str):
        raise Refusal(INVALID_PARAM, "image.base64 required")
    try:
        raw = base64.b64decode(image["base64"], validate=True)
    except binascii.Error:
        raise Refusal(INVALID_PARAM, "image.base64 is not base64") from None
    if len(raw) > ROBOT_IMAGE_BYTES:
        raise Refusal(IMAGE_TOO_BIG, "image size over 2M")
    if image_kind(raw) is None:
        raise Refusal(INVALID_PARAM, "image must be jpg or png")
    if image.get("md5") != hashlib.md5(raw).hexdigest():  # noqa: S324 - the API's checksum
        raise Refusal(MD5_MISMATCH, "image md5 mismatch")
    return raw


def _check_buttons(card: dict[str, Any]) -> None:
    buttons = card.get("button_list")
    if not isinstance(buttons, list) or not 1 <= len(buttons) <= 6:
        raise Refusal(INVALID_PARAM, "button_list must have 1-6 buttons")
    keys = [b.get("key") for b in buttons if isinstance(b, dict)]
    if len(keys) != len(buttons) or len(set(keys)) != len(keys):
        raise Refusal(INVALID_PARAM, "button keys must be unique")
    for b in buttons:
        if not isinstance(b.get("text"), str) or not b["text"]:
            raise Refusal(INVALID_PARAM, "button text required")
        if not isinstance(b["key"], str) or len(b["key"].encode()) > 1024:
            raise Refusal(INVALID_PARAM, "button key over 1024 bytes")
        if type(b.get("style", 1)) is not int or not 1 <= b.get("style", 1) <= 4:
            raise Refusal(INVALID_PARAM, "button style must be 1-4")


def _check_parts(card: dict[str, Any]) -> None:
    """The optional blocks: types and required fields as the docs list them."""
    source = card.get("source")
    if source is not None and (
        not isinstance(source, dict) or source.get("desc_color", 0) not in (0, 1, 2, 3)
    ):
        raise Refusal(INVALID_PARAM, "invalid source")
    items = card.get("horizontal_content_list") or []
    if not isinstance(items, list) or len(items) > 6:
        raise Refusal(INVALID_PARAM, "horizontal_content_list over 6 items")
    for item in items:
        if not isinstance(item, dict) or not isinstance(item.get("keyname"), str):
            raise Refusal(INVALID_PARAM, "horizontal_content_list item needs keyname")
    quote = card.get("quote_area")
    if quote is not None and (
        not isinstance(quote, dict) or quote.get("type", 0) not in (0, 1, 2)
    ):
        raise Refusal(INVALID_PARAM, "invalid quote_area")
    action = card.get("card_action")
    if action is not None:
        kind = action.get("type") if isinstance(action, dict) else None
        if kind not in (1, 2) or (kind == 1 and not action.get("url")):
            raise Refusal(INVALID_PARAM, "invalid card_action")


def check_card(card: Any, *, send: bool, seen: set[str]) -> None:
    """What the real API validates on a template_card (as far as the docs say)."""
    if not isinstance(card, dict) or card.get("card_type") not in CARD_TYPES:
        raise Refusal(INVALID_PARAM, "invalid template_card.card_type")
    kind = card["card_type"]
    task_id = card.get("task_id")
    if kind in INTERACTIVE or task_id is not None:
        if not isinstance(task_id, str) or not task_id or len(task_id.encode()) > 128:
            raise Refusal(TASK_ID_EXISTS, "taskid has existed or empty or exceed max len")
        if not _TASK_ID.fullmatch(task_id):
            raise Refusal(INVALID_PARAM, "invalid task_id")  # errcode UNCONFIRMED
        if send and task_id in seen:
            raise Refusal(TASK_ID_EXISTS, "taskid has existed or empty or exceed max len")
    title = card.get("main_title")
    if not isinstance(title, dict) or not isinstance(title.get("title"), str):
        raise Refusal(INVALID_PARAM, "main_title.title required")
    _check_parts(card)
    if kind == "text_notice" and not isinstance(card.get("card_action"), dict):
        raise Refusal(INVALID_PARAM, "text_notice requires card_action")
    if kind == "button_interaction":
        _check_buttons(card)


def media_answer(
    content: bytes, ctype: str, name: str, wanted: str | None, range_required_over: int
) -> web.Response:
    """media/get for a known file: whole when small, else only by `Range` (206)."""
    headers = {"Content-Disposition": f'attachment; filename="{name}"'}
    if wanted is None:
        if len(content) > range_required_over:
            return web.json_response({"errcode": 830002, "errmsg": "file too large, use Range"})
        return web.Response(body=content, content_type=ctype, headers=headers)
    m = re.fullmatch(r"bytes=(\d+)-(\d*)", wanted)
    if m is None or int(m.group(1)) >= len(content):
        return web.Response(status=416, headers={"Content-Range": f"bytes */{len(content)}"})
    first = int(m.group(1))
    last = min(int(m.group(2) or len(content) - 1), len(content) - 1)
    if last - first + 1 > RANGE_MAX:
        return web.json_response({"errcode": 830002, "errmsg": "range over 20 MB"})
    headers["Content-Range"] = f"bytes {first}-{last}/{len(content)}"
    return web.Response(
        status=206, body=content[first : last + 1], content_type=ctype, headers=headers
    )


def err(errcode: int, errmsg: str) -> web.Response:
    return web.json_response({"errcode": errcode, "errmsg": errmsg})
