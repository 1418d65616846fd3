"""`POST /webhooks/douyin`: the 抖店 message push, verified, parsed, stored, acknowledged.

In this order, before anything is parsed or stored: the body is read up to
`server.max_body_bytes`; the `app-id` header must name a configured app and
`event-sign` must equal the lowercase hex MD5 of app_key + raw body + app_secret
(compared case-insensitively in constant time; reference/channels.md §2.1).
A refusal is a 4xx with `{"code": 40041, "msg": …}` and stores nothing.

The body is a JSON array of `{tag, msg_id, data}`; the parser also takes
`msgId`, an integer tag and `data` as an object (the SKIT samples), since which
one the platform sends is unconfirmed. Tag 0 is the URL check the console sends
when the URL is saved: answered success, nothing stored. After-sale tags 200–209
and 211–218 become `ChannelNotice`s; other tags are acknowledged and dropped.
The notices are recorded by the dispatcher (one group commit for the batch) and
the POST is answered `{"code":0,"msg":"success"}` only once every one of them is
stored, so a crash before that makes the platform deliver the batch again; the
detail fetch runs after the answer (bot/channels/douyin.py).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from bot import keys
from bot.appkeys import CTX
from bot.channels.douyin_detail import CHANNEL
from bot.channels.generic_body import Rejected
from bot.channels.shops import DouyinShop
from bot.channels.values import id_str
from bot.events import ChannelNotice
from bot.web.body import BodyTooLarge, json_value, read_body
from storage.db import is_unavailable

log = logging.getLogger(__name__)

ROUTE = "/webhooks/douyin"
APP_HEADER, SIGN_HEADER, METHOD_HEADER = "app-id", "event-sign", "sign-method"
PING = "0"
TAGS = frozenset(str(t) for t in (*range(200, 210), *range(211, 219)))
SUCCESS = {"code": 0, "msg": "success"}
MAX_ITEMS = 500

Accept = Callable[[ChannelNotice], Awaitable[bool]]  # the dispatcher's accept
ACCEPT: web.AppKey[Accept] = web.AppKey("douyin_accept")
SHOPS: web.AppKey[list[DouyinShop]] = web.AppKey("douyin_shops")


@dataclass(frozen=True, slots=True)
class PushItem:
    tag: str
    msg_id: str
    data: dict[str, Any]


def event_sign(app_key: str, app_secret: str, body: bytes) -> str:
    """Lowercase hex MD5(app_key + raw body + app_secret)."""
    digest = hashlib.md5(app_key.encode() + body + app_secret.encode(), usedforsecurity=False)
    return digest.hexdigest()


def hmac_sign(app_key: str, app_secret: str, body: bytes) -> str:
    """The unconfirmed HMAC variant: hex HMAC-SHA256(secret, app_key + body + secret)."""
    message = app_key.encode() + body + app_secret.encode()
    return hmac.new(app_secret.encode(), message, hashlib.sha256).hexdigest()


def verify(
    shops: list[DouyinShop], app_id: str, signature: str, body: bytes, method: str = ""
) -> str:
    """The app key the push is signed for; Rejected(401) otherwise.

    MD5 is what every SDK implements; a push that says `sign-method: hmac-sha256`
    is checked with the HMAC variant instead (reference/channels.md §2.1, [U])."""
    if not app_id or not signature:
        raise Rejected(401, f"missing {APP_HEADER} or {SIGN_HEADER} header")
    secrets = {s.app_key: s.app_secret for s in shops if s.configured}
    secret = secrets.get(app_id)
    if secret is None:
        raise Rejected(401, f"{APP_HEADER} is not a configured app")
    given = signature.strip().lower()
    recipe = hmac_sign if method.strip().lower() == "hmac-sha256" else event_sign
    if not given.isascii() or not hmac.compare_digest(given, recipe(app_id, secret, body)):
        raise Rejected(401, f"{SIGN_HEADER} does not match the body")
    return app_id


def _tag(value: object) -> str:
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    if isinstance(value, str) and value.strip().isdigit():
        return str(int(value.strip()))
    raise Rejected(400, f"tag must be a number or a string of digits, got {value!r:.40}")


def _data(value: object) -> dict[str, Any]:
    if isinstance(value, str):
        try:
            value = json_value(value)
        except ValueError:
            raise Rejected(400, "data is not valid JSON") from None
    if not isinstance(value, dict):
        raise Rejected(400, "data must be a JSON object or a string holding one")
    return value


def parse(raw: bytes) -> list[PushItem]:
    """The push's items, whichever of the known shapes each one takes."""
    try:
        body = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise Rejected(400, "body is not valid JSON") from None
    if isinstance(body, dict):
        body = [body]
    if not isinstance(body, list) or not body:
        raise Rejected(400, "body must be a non-empty JSON array of messages")
    if len(body) > MAX_ITEMS:
        raise Rejected(413, f"more than {MAX_ITEMS} messages in one push")
    items = []
    for element in body:
        if not isinstance(element, dict):
            raise Rejected(400, "every message must be a JSON object")
        tag = _tag(element.get("tag"))
        msg_id = element.get("msg_id", element.get("msgId", ""))
        if not isinstance(msg_id, str | int) or isinstance(msg_id, bool):
            raise Rejected(400, "msg_id must be a string")
        data = {} if tag == PING else _data(element.get("data", "{}"))
        items.append(PushItem(tag, str(msg_id), data))
    return items


def _shop_for(shops: list[DouyinShop], app_key: str, shop_id: str) -> DouyinShop | None:
    ours = [s for s in shops if s.app_key == app_key]
    return next((s for s in ours if s.shop_id == shop_id), None) or next(
        (s for s in ours if not s.shop_id), None
    )


def notices(items: list[PushItem], shops: list[DouyinShop], app_key: str) -> list[ChannelNotice]:
    """The after-sale notices among `items`, each keyed by shop and msg_id."""
    found = []
    for item in items:
        if item.tag not in TAGS:
            if item.tag != PING:
                log.info("douyin push: tag %s is not an after-sale message; dropped", item.tag)
            continue
        try:
            shop_id = id_str(item.data.get("shop_id"), "data.shop_id")
            aftersale = id_str(item.data.get("aftersale_id"), "data.aftersale_id")
        except ValueError as exc:
            raise Rejected(422, f"tag {item.tag}: {exc}") from None
        if _shop_for(shops, app_key, shop_id) is None:
            log.warning("douyin push for shop %s, which is not configured; dropped", shop_id)
            continue
        version = str(item.data.get("update_time") or "")
        msg = item.msg_id or keys.key("tag", item.tag, aftersale, version)
        found.append(
            ChannelNotice(keys.key(CHANNEL, shop_id, msg), CHANNEL, shop_id, aftersale, item.tag)
        )
    return found


def setup(app: web.Application, shops: list[DouyinShop], accept: Accept) -> None:
    app[SHOPS] = shops
    app[ACCEPT] = accept
    app.router.add_post(ROUTE, receive)


def _answer(status: int, body: dict[str, Any]) -> web.Response:
    return web.json_response(body, status=status)


async def receive(request: web.Request) -> web.Response:
    """Verify, parse, store every notice, then answer success."""
    ctx = request.app[CTX]
    shops = request.app[SHOPS]
    try:
        try:
            raw = await read_body(request, ctx.settings.server.max_body_bytes)
        except BodyTooLarge as exc:
            raise Rejected(413, str(exc)) from None
        headers = request.headers
        method = headers.get(METHOD_HEADER, headers.get("sign_method", ""))
        app_key = verify(
            shops, headers.get(APP_HEADER, ""), headers.get(SIGN_HEADER, ""), raw, method
        )
        found = notices(parse(raw), shops, app_key)
    except Rejected as exc:
        log.warning(
            "douyin push from %s refused (%d): %s", request.remote, exc.status, exc.message
        )
        return _answer(exc.status, {"code": 40041, "msg": exc.message})
    try:
        stored = await asyncio.gather(*(request.app[ACCEPT](n) for n in found))
    except Exception as exc:
        if is_unavailable(exc):  # an outage 抖店 waits out by pushing again: no traceback
            log.warning("douyin push: %d notice(s) not stored, database unavailable (%s)",
                        len(found), type(exc).__name__)  # fmt: skip
        else:
            log.exception("douyin push: storing %d notices failed", len(found))
        return _answer(503, {"code": 1, "msg": "fail"})
    if not all(stored):
        log.warning("douyin push refused: shutting down")
        return _answer(503, {"code": 1, "msg": "fail"})
    log.info("douyin push: %d notice(s) stored", len(found))
    return _answer(200, SUCCESS)
