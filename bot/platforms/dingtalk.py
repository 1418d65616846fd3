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

Outbound, `DingtalkPlatform` (destination `dingtalk:<staffId>`) sends advanced
interactive cards to the robot's 1:1 chat (IM_ROBOT) and texts through the
message's `sessionWebhook` while it is valid, the robot OpenAPI after;
`DingtalkGroupPlatform` (`dingtalk-group:<openConversationId>`) puts one card in
a role's group (IM_GROUP); dingtalk_robot.py posts notices to custom robots.
A card's `platform_ref` is its `outTrackId` (bot.cards.send_id).

This module never imports `handlers`: bot/app.py passes what it needs.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import re
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import aiohttp
from aiohttp import web

from bot.appkeys import CTX, DISPATCH, RENDERER
from bot.cards import Card, CardRenderer, send_id
from bot.events import CardAction
from bot.outbox import RetryableError
from bot.platforms import dingtalk_cards
from bot.platforms.dingtalk_client import DingtalkClient, FileData
from bot.platforms.dingtalk_crypto import EventCrypto
from bot.platforms.dingtalk_errors import DingtalkApiError
from bot.platforms.dingtalk_events import (
    NAME,
    WEBHOOK_PATH,
    Session,
    Unsupported,
    parse_card_callback,
    parse_message,
)
from bot.platforms.dingtalk_robot import ROBOT_PLATFORM, DingtalkRobotPlatform
from bot.platforms.dingtalk_sign import verify
from bot.platforms.inbound import CallbackRejected, epoch, read_body
from bot.platforms.outbound import split_text
from bot.settings import DingtalkSettings
from storage.models import CardRecord

log = logging.getLogger(__name__)

PATH = "/callbacks/dingtalk"
CARD_PATH = "/callbacks/dingtalk/card"
EVENTS_PATH = "/callbacks/dingtalk/events"
ROBOT_TOPIC = "/v1.0/im/bot/messages/get"
CARD_TOPIC = "/v1.0/card/instances/callback"
GROUP_PLATFORM = "dingtalk-group"
MAX_BODY = 64 * 1024
TEXT_BYTES = 4000  # UNCONFIRMED: no documented byte limit for robot text
SESSION_MARGIN_MS = 60_000  # a session webhook this close to expiry is not used
CLICK_WAIT = 1.5  # seconds the card callback waits for its handler before answering
SEEN_SIGNS = 50_000
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


# --- sessions and replays -----------------------------------------------------------------


class Sessions:
    """Each member's latest 1:1 `sessionWebhook`, kept only if it points at DingTalk.

    Per process: another replica, or this one after a restart, replies through the
    OpenAPI instead, which always works.
    """

    def __init__(self, oapi_base: str, now_ms: Callable[[], int]) -> None:
        self.host = urlsplit(oapi_base).netloc
        self.now_ms = now_ms
        self._by_user: dict[str, Session] = {}

    def remember(self, session: Session) -> None:
        url = urlsplit(session.url)
        if (
            url.netloc != self.host
            or url.path != WEBHOOK_PATH
            or url.scheme
            not in (
                "https",
                "http",
            )
        ):
            log.warning("dingtalk sessionWebhook for %s ignored: not DingTalk's", session.user_id)
            return
        self._by_user[session.user_id] = session

    def url_for(self, user_id: str) -> str | None:
        session = self._by_user.get(user_id)
        if session is None or session.expires_ms - SESSION_MARGIN_MS <= self.now_ms():
            self._by_user.pop(user_id, None)
            return None
        return session.url

    def forget(self, user_id: str) -> None:
        self._by_user.pop(user_id, None)


class SignGuard:
    """One (timestamp, sign) pair, one message: the signature covers no body, so a
    captured pair replayed with another body (another msgId) is refused. Per process,
    bounded; entries older than the window are dropped."""

    def __init__(self, window_ms: int) -> None:
        self.window_ms = window_ms
        self._seen: OrderedDict[tuple[str, str], str] = OrderedDict()

    def claim(self, timestamp: str, sign: str, msg_id: str) -> bool:
        """Raise if the pair signed another message; True if this call recorded it."""
        cutoff = int(timestamp) - 2 * self.window_ms
        while self._seen and (
            len(self._seen) > SEEN_SIGNS or int(next(iter(self._seen))[0]) < cutoff
        ):
            self._seen.popitem(last=False)
        pair = (timestamp, sign)
        seen = self._seen.get(pair)
        if seen is not None and seen != msg_id:
            raise CallbackRejected(403, "sign already used for another message (replay)")
        self._seen[pair] = msg_id
        return seen is None

    def release(self, timestamp: str, sign: str) -> None:
        """Forget a pair whose message was refused: it signed nothing we took."""
        self._seen.pop((timestamp, sign), None)


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


def _refuse(request: web.Request, exc: CallbackRejected) -> web.Response:
    log.warning(
        "dingtalk %s refused (%d) from %s: %s",
        request.path,
        exc.status,
        request.remote,
        exc.reason,
    )
    return web.json_response({"error": exc.reason}, status=exc.status)


async def _json(request: web.Request) -> Payload:
    body = await read_body(request, request.app[INBOUND].max_body)
    try:
        data = json.loads(body)
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
        return _refuse(request, exc)
    pair = request.headers["timestamp"], request.headers["sign"]
    claimed = False
    try:
        claimed = inbound.guard.claim(*pair, str(data.get("msgId")))
        answer = await request.app[HANDLERS][ROBOT_TOPIC](data)
    except CallbackRejected as exc:
        if claimed:
            inbound.guard.release(*pair)
        return _refuse(request, exc)
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
        return _refuse(request, exc)
    return web.json_response(answer)


async def receive_event(request: web.Request) -> web.Response:
    """An event push: verify and decrypt, log, answer the encrypted "success" at once."""
    inbound = request.app[INBOUND]
    assert inbound.events is not None  # mounted only with the event keys  # noqa: S101
    try:
        body = await read_body(request, request.app[INBOUND].max_body)
        event = inbound.events.open(request.query, body)
    except CallbackRejected as exc:
        return _refuse(request, exc)
    log.info("dingtalk event %s acknowledged", str(event.get("EventType", "?"))[:64])
    return web.json_response(inbound.events.success())


# --- outbound -----------------------------------------------------------------------------


class DingtalkPlatform:
    """The outbox's DingTalk adapter: cards and texts in the robot's 1:1 chats."""

    name = NAME

    def __init__(self, client: DingtalkClient, renderer: CardRenderer, sessions: Sessions) -> None:
        self.client = client
        self.renderer = renderer
        self.sessions = sessions

    def _deliver_model(self, recipient: str) -> Payload:
        settings = self.client.settings
        return {
            "openSpaceId": f"dtv1.card//IM_ROBOT.{recipient}",
            "imRobotOpenDeliverModel": {"spaceType": "IM_ROBOT", "robotCode": settings.robot_code},
            "userIdType": 1,
        }

    def _create_extra(self) -> Payload:
        return {"imRobotOpenSpaceModel": {"supportForward": False}}

    async def send_card(self, recipient: str, card: Card, *, card_id: int, outbox_id: int) -> str:
        """createAndDeliver; every recipient's `deliverResults` entry must say success.

        The outTrackId is the same on every attempt of this send, so a retry after a
        failed recipient (or a lost answer) finds the instance and delivers it again
        instead of creating a second card. DingTalk's refusal of a known outTrackId
        is UNCONFIRMED in wording: any refusal that names it is read so.
        """
        settings = self.client.settings
        ref = send_id(card, card_id, outbox_id)
        deliver = {"outTrackId": ref, **self._deliver_model(recipient)}
        body: Payload = {
            **deliver,
            **self._create_extra(),
            "cardTemplateId": settings.card_template_id,
            "cardData": {"cardParamMap": dingtalk_cards.param_map(self.renderer, card)},
            "callbackType": "STREAM" if settings.mode == "stream" else "HTTP",
        }
        if settings.mode != "stream":
            body["callbackRouteKey"] = settings.callback_route_key
        try:
            failed = await self.client.create_and_deliver(body)
        except DingtalkApiError as exc:
            if "outtrackid" not in str(exc).lower():
                raise
            log.info("dingtalk card %s exists already: delivering it again", ref)
            failed = await self.client.deliver(deliver)
        if failed:
            space, error = failed[0]
            raise RetryableError(f"dingtalk card {ref} not delivered to {space}: {error}")
        return ref

    async def update_card(
        self, recipient: str, platform_ref: str, card: Card, *, card_id: int
    ) -> str | None:
        """PUT card/instances: the copy shows who decided and when, without buttons."""
        if not platform_ref:
            raise RetryableError(f"dingtalk card {card_id} for {recipient} is not shown yet")
        await self.client.update_card(platform_ref, dingtalk_cards.param_map(self.renderer, card))
        return None

    async def send_text(self, recipient: str, text: str, *, outbox_id: int) -> None:
        """The member's session webhook while valid (a reply in the chat they wrote in),
        else the robot's 1:1 chat through the OpenAPI."""
        for piece in split_text(text, TEXT_BYTES):
            url = self.sessions.url_for(recipient)
            if url is not None:
                message = {"msgtype": "text", "text": {"content": piece}}
                try:
                    await self.client.post_oapi(url, "sendBySession", message)
                    continue
                except DingtalkApiError as exc:
                    log.info("dingtalk session reply to %s refused (%s): OpenAPI", recipient, exc)
                    self.sessions.forget(recipient)
            await self.client.send_to_users([recipient], "sampleText", {"content": piece})

    async def fetch_media(self, media_id: str) -> FileData:
        """A picture a robot message named by `downloadCode`."""
        return await self.client.download(media_id)


class DingtalkGroupPlatform(DingtalkPlatform):
    """One card in a role's group (IM_GROUP, `[roles.X] dingtalk_conversation_id`):
    whoever holds the role clicks it there, and the one copy updates for everyone."""

    name = GROUP_PLATFORM

    def _deliver_model(self, recipient: str) -> Payload:
        return {
            "openSpaceId": f"dtv1.card//IM_GROUP.{recipient}",
            "imGroupOpenDeliverModel": {"robotCode": self.client.settings.robot_code},
            "userIdType": 1,
        }

    def _create_extra(self) -> Payload:
        return {"imGroupOpenSpaceModel": {"supportForward": False}}

    async def send_text(self, recipient: str, text: str, *, outbox_id: int) -> None:
        for piece in split_text(text, TEXT_BYTES):
            await self.client.send_to_group(recipient, "sampleText", {"content": piece})


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
            client, renderer, settings.robots, settings.robot_secrets, wall_ms=sessions.now_ms
        )
    return platforms
