"""DingTalk (钉钉) internal app with a robot: the callback routes and the outbox adapters.

Inbound, HTTP mode:

- `POST /callbacks/dingtalk` (robot messages): `timestamp` + `sign` headers checked
  (dingtalk_sign.py, 1-hour window on the app's clock), then the JSON body, which
  the signature does not cover: `robotCode` must be ours, the sender a member
  (the handlers check, by `senderStaffId`), every message is deduped on `msgId`,
  and one (timestamp, sign) pair is refused for a second message (a replay).
- `POST /callbacks/dingtalk/card` (card clicks, registered with `returnhub dingtalk
  register-callback`): DingTalk's own signing of these is UNCONFIRMED, so the URL
  we register carries a key derived from the app secret (`card_key`), compared in
  constant time; the click's token is signed by us and the clicker's role is
  checked by the handler. The answer is the card as the click left it, so the
  clicker's copy changes at once; every other copy follows through the outbox.
- `POST /callbacks/dingtalk/events` (event subscription): dingtalk_crypto.py; every
  push, `check_url` included, is answered with the encrypted "success".

`stream_handlers` gives Stream mode (bot/platforms/dingtalk_stream.py) the same two
functions the HTTP routes call, keyed by Stream topic: each takes the JSON DingTalk
would POST, returns the JSON answer once the event's idempotency key is stored
(Dispatcher.accept), and raises CallbackRejected for what it refuses.

Outbound, `build_platforms` gives the outbox the robot's 1:1 chats and a role's
groups (dingtalk_platform.py) and the custom robots (dingtalk_robot.py).

This module never imports `handlers`: bot/app.py passes what it needs.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import aiohttp
from aiohttp import web

from bot.appkeys import CTX, DISPATCH, RENDERER
from bot.cards import Card, CardRenderer
from bot.events import CardAction
from bot.platforms import dingtalk_cards
from bot.platforms.dingtalk_client import DingtalkClient
from bot.platforms.dingtalk_crypto import EventCrypto
from bot.platforms.dingtalk_events import (
    NAME,
    Unsupported,
    parse_card_callback,
    parse_message,
)
from bot.platforms.dingtalk_platform import GROUP_PLATFORM, DingtalkGroupPlatform, DingtalkPlatform
from bot.platforms.dingtalk_robot import ROBOT_PLATFORM, DingtalkRobotPlatform
from bot.platforms.dingtalk_sessions import Sessions, SignGuard
from bot.platforms.dingtalk_sign import verify
from bot.platforms.inbound import CallbackRejected, epoch, read_body, refuse
from bot.settings import DingtalkSettings
from bot.web.body import json_value
from storage.models import CardRecord

log = logging.getLogger(__name__)

PATH = "/callbacks/dingtalk"
CARD_PATH = "/callbacks/dingtalk/card"
EVENTS_PATH = "/callbacks/dingtalk/events"
ROBOT_TOPIC = "/v1.0/im/bot/messages/get"
CARD_TOPIC = "/v1.0/card/instances/callback"
MAX_BODY = 64 * 1024
CLICK_WAIT = 1.5  # seconds the card callback waits for its handler before answering
_CARD_PART = re.compile(r"-c(\d+)-")

Payload = dict[str, Any]
Handle = Callable[[Payload], Awaitable[Payload]]
ReplyUnsupported = Callable[[Unsupported], Awaitable[None]]


def card_key(app_secret: str) -> str:
    """The key in the registered card-callback URL (and its apiSecret): derived from
    the app secret, so rotating the secret rotates it; never the secret itself."""
    mac = hmac.new(app_secret.encode(), b"returnhub dingtalk card callback", hashlib.sha256)
    return base64.urlsafe_b64encode(mac.digest()[:24]).decode()


def callback_url(public_url: str, app_secret: str) -> str:
    """What `returnhub dingtalk register-callback` registers for HTTP card callbacks."""
    return f"{public_url.rstrip('/')}{CARD_PATH}?key={card_key(app_secret)}"


# --- inbound ------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Inbound:
    settings: DingtalkSettings
    now: Callable[[], float]
    guard: SignGuard
    events: EventCrypto | None
    max_body: int


INBOUND: web.AppKey[_Inbound] = web.AppKey("dingtalk_inbound", _Inbound)
HANDLERS: web.AppKey[dict[str, Handle]] = web.AppKey("dingtalk_handlers", dict)


def install(app: web.Application, sessions: Sessions, unsupported: ReplyUnsupported) -> None:
    """Make the robot-message and card-callback handlers (both modes use them)."""
    settings = app[CTX].settings.dingtalk

    async def accept(event: Any) -> None:
        if not await app[DISPATCH].accept(event):
            raise CallbackRejected(503, "shutting down")

    async def robot_message(data: Payload) -> Payload:
        message = parse_message(data, robot_code=settings.robot_code)
        if message.session is not None:
            sessions.remember(message.session)
        for event in message.events:
            if isinstance(event, Unsupported):
                await unsupported(event)
            else:
                await accept(event)
        return {}

    async def card_callback(data: Payload) -> Payload:
        action = parse_card_callback(data)
        await accept(action)
        await app[DISPATCH].settled(action.key, CLICK_WAIT)
        return await card_answer(app, str(data["outTrackId"]), action)

    handlers: dict[str, Handle] = {ROBOT_TOPIC: robot_message, CARD_TOPIC: card_callback}
    app[HANDLERS] = handlers


def stream_handlers(app: web.Application) -> dict[str, Handle]:
    """The robot-message and card-callback handlers by Stream topic (HTTP uses them too).

    Each takes the JSON payload DingTalk sends (a Stream frame's `data`, parsed) and
    returns the JSON answer after the event's idempotency key is stored; refusals
    raise CallbackRejected (503 while shutting down: DingTalk then re-sends).
    """
    return app[HANDLERS]


async def card_answer(app: web.Application, out_track_id: str, action: CardAction) -> Payload:
    """The card as it now stands, for the callback's answer (or {} if not ours)."""
    found = _CARD_PART.search(out_track_id)
    if found is None:
        return {}
    async with app[CTX].db.read() as session:
        record = await session.get(CardRecord, int(found.group(1)))
    if record is None or record.platform_ref != out_track_id:
        log.info("dingtalk card callback %s: not a card we sent", action.key)
        return {}
    params = dingtalk_cards.param_map(app[RENDERER], Card.from_dict(record.card))
    return {
        "cardData": {"cardParamMap": params},
        "cardUpdateOptions": {"updateCardDataByKey": True},
    }


def setup(app: web.Application, *, max_body: int = MAX_BODY) -> None:
    """Mount the HTTP-mode routes (after `install`); the event subscription only with
    event_token and event_aes_key."""
    settings = app[CTX].settings.dingtalk
    now = epoch(app[CTX].clock)
    events = None
    if settings.event_token and settings.event_aes_key:
        events = EventCrypto(
            settings.event_token,
            settings.event_aes_key,
            settings.app_key,
            now=now,
            window_seconds=settings.replay_window_seconds,
        )
        app.router.add_post(EVENTS_PATH, receive_event)
    guard = SignGuard(settings.replay_window_seconds * 1000)
    app[INBOUND] = _Inbound(settings, now, guard, events, max_body)
    if settings.mode == "http":
        app.router.add_post(PATH, receive_message)
        app.router.add_post(CARD_PATH, receive_card)


async def _json(request: web.Request) -> Payload:
    body = await read_body(request, request.app[INBOUND].max_body)
    try:
        data = json_value(body)
    except ValueError:
        raise CallbackRejected(400, "body is not JSON") from None
    if not isinstance(data, dict):
        raise CallbackRejected(400, "body is not a JSON object")
    return data


async def receive_message(request: web.Request) -> web.Response:
    """A robot message: verify the sign, dedupe, hand over, answer `{}`."""
    inbound = request.app[INBOUND]
    try:
        verify(
            request.headers,
            inbound.settings.app_secret,
            now=inbound.now,
            window=inbound.settings.replay_window_seconds,
        )
        data = await _json(request)
    except CallbackRejected as exc:
        return refuse(request, exc, log)
    pair = request.headers["timestamp"], request.headers["sign"]
    claimed = False
    try:
        claimed = inbound.guard.claim(*pair, str(data.get("msgId")))
        answer = await request.app[HANDLERS][ROBOT_TOPIC](data)
    except CallbackRejected as exc:
        if claimed:
            inbound.guard.release(*pair)
        return refuse(request, exc, log)
    return web.json_response(answer)


async def receive_card(request: web.Request) -> web.Response:
    """A card click: the registered URL's key, then the shared handler; its answer
    carries the card as the click left it."""
    inbound = request.app[INBOUND]
    try:
        key = request.query.get("key", "")
        if not hmac.compare_digest(key.encode(), card_key(inbound.settings.app_secret).encode()):
            raise CallbackRejected(403, "card callback key mismatch")
        answer = await request.app[HANDLERS][CARD_TOPIC](await _json(request))
    except CallbackRejected as exc:
        return refuse(request, exc, log)
    return web.json_response(answer)


async def receive_event(request: web.Request) -> web.Response:
    """An event push: verify and decrypt, log, answer the encrypted "success" at once."""
    inbound = request.app[INBOUND]
    assert inbound.events is not None  # mounted only with the event keys  # noqa: S101
    try:
        body = await read_body(request, request.app[INBOUND].max_body)
        event = inbound.events.open(request.query, body)
    except CallbackRejected as exc:
        return refuse(request, exc, log)
    log.info("dingtalk event %s acknowledged", str(event.get("EventType", "?"))[:64])
    return web.json_response(inbound.events.success())


def build_platforms(
    settings: DingtalkSettings,
    renderer: CardRenderer,
    http: Callable[[], aiohttp.ClientSession],
    sessions: Sessions,
) -> dict[str, DingtalkPlatform | DingtalkRobotPlatform]:
    """The enabled DingTalk platforms by name: the app robot's chats and groups
    (app_key + app_secret), and the custom robots."""
    client = DingtalkClient(settings, http)
    platforms: dict[str, DingtalkPlatform | DingtalkRobotPlatform] = {}
    if settings.enabled:
        platforms[NAME] = DingtalkPlatform(client, renderer, sessions)
        platforms[GROUP_PLATFORM] = DingtalkGroupPlatform(client, renderer, sessions)
    if settings.robots:
        platforms[ROBOT_PLATFORM] = DingtalkRobotPlatform(
            client,
            renderer,
            settings.robots,
            settings.robot_secrets,
            clock=lambda: sessions.now_ms() / 1000,
            wall_ms=sessions.now_ms,
        )
    return platforms
