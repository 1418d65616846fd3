"""WeCom (企业微信) self-built app: the callback route and the outbox-facing adapter.

Inbound, `GET/POST /callbacks/wecom` verifies (constant-time signature, replay
window on the app's clock, CorpID, body size), decrypts, parses into a neutral
event and hands it to the dispatcher, then answers at once: the URL check with
the decrypted echostr as plain text, a message with 200 and an empty body (no
passive reply). WeCom gives up after 5 s and re-sends; the handler claims the
event's idempotency key in its own transaction, so a re-send has no effect.
Anything we refuse gets a 4xx with a logged reason and touches nothing.

Outbound, `WecomPlatform` is what the outbox drives (bot/platforms/base.py):
cards are `template_card`s (wecom_cards.py), their `platform_ref` is
"<task_id>|<response_code>" ("<task_id>|" once the code is used up), and a
decided card is replaced for each recipient with `message/update_template_card`.
`WecomRobotPlatform` (wecom_robot.py) posts to robots (destination
`wecom-robot:<robot name>`, 20 a minute each, enforced by the outbox's per-prefix
rate limit); `WecomChatPlatform` (wecom_chat.py) posts notices to a role's group
chat (destination `wecom-chat:<chatid>`).

This module never imports `handlers`: bot/app.py passes the handler functions.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import aiohttp
from aiohttp import web

from bot.appkeys import CTX, DISPATCH
from bot.cards import Card, CardRenderer, send_id
from bot.outbox import RetryableError
from bot.platforms import wecom_cards
from bot.platforms.inbound import CallbackRejected, epoch, read_body, refuse
from bot.platforms.outbound import PNG, Upload, split_text
from bot.platforms.wecom_chat import CHAT_PLATFORM, WecomChatPlatform
from bot.platforms.wecom_client import WecomClient
from bot.platforms.wecom_crypto import WecomCrypto
from bot.platforms.wecom_errors import WecomApiError
from bot.platforms.wecom_events import NOT_UPDATABLE, make_ref, parse, split_ref
from bot.platforms.wecom_media import Media, download
from bot.platforms.wecom_outage import Alert
from bot.platforms.wecom_robot import ROBOT_PLATFORM, WecomRobotPlatform, fit_markdown
from bot.settings import WecomSettings

log = logging.getLogger(__name__)

NAME = "wecom"
PATH = "/callbacks/wecom"
MAX_BODY = 64 * 1024  # callbacks are a few KB; the app-wide limit is far larger
TEXT_BYTES = 2048  # message/send text: longer is cut by WeCom, so we split
CODE_SPENT = frozenset({60140})  # update_template_card: response_code used or expired


# --- inbound ------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Inbound:
    crypto: WecomCrypto
    agent_id: int
    max_body: int


INBOUND: web.AppKey[_Inbound] = web.AppKey("wecom_inbound", _Inbound)


def setup(app: web.Application, *, max_body: int = MAX_BODY) -> None:
    """Mount `GET/POST /callbacks/wecom` (needs [wecom] corp_id, token, encoding_aes_key)."""
    ctx = app[CTX]
    settings = ctx.settings.wecom
    if not (settings.corp_id and settings.token and settings.encoding_aes_key):
        log.warning("wecom callback not mounted: set wecom.corp_id, token, encoding_aes_key")
        return
    crypto = WecomCrypto(
        settings.token,
        settings.encoding_aes_key,
        settings.corp_id,
        now=epoch(ctx.clock),
        window_seconds=settings.replay_window_seconds,
    )
    app[INBOUND] = _Inbound(crypto, settings.agent_id, max_body)
    app.router.add_get(PATH, verify_url)
    app.router.add_post(PATH, receive)


async def verify_url(request: web.Request) -> web.Response:
    """The admin console's URL check: echo the decrypted echostr, plain text, nothing else."""
    try:
        echo = request.app[INBOUND].crypto.verify_url(request.query)
    except CallbackRejected as exc:
        return refuse(request, exc, log)
    return web.Response(text=echo, content_type="text/plain")


async def receive(request: web.Request) -> web.Response:
    """Verify, decrypt, parse, hand over, answer: no database and no API call in here."""
    inbound = request.app[INBOUND]
    try:
        body = await read_body(request, inbound.max_body)
        event = parse(inbound.crypto.open(request.query, body), agent_id=inbound.agent_id)
    except CallbackRejected as exc:
        return refuse(request, exc, log)
    accepted = event is None or await request.app[DISPATCH].accept(event)
    if not accepted:  # shutting down: a non-200 makes WeCom re-send to another replica
        log.warning("wecom event %s refused: shutting down", getattr(event, "key", "?"))
        return web.json_response({"error": "shutting down"}, status=503)
    return web.Response(status=200, text="")


# --- outbound -----------------------------------------------------------------------------


class WecomPlatform:
    """The outbox's WeCom adapter: cards to members' app chats, and their updates."""

    name = NAME

    def __init__(self, client: WecomClient, renderer: CardRenderer, *, link: str = "") -> None:
        self.client = client
        self.renderer = renderer
        self.link = link

    def _card(self, card: Card, task_id: str) -> dict[str, Any]:
        return wecom_cards.render(
            self.renderer,
            card,
            agent_id=self.client.settings.agent_id,
            task_id=task_id,
            link=self.link,
        )

    async def send_card(self, recipient: str, card: Card, *, card_id: int, outbox_id: int) -> str:
        """message/send a template_card; the ref is "<task_id>|<response_code>".

        The task_id is the same on every attempt of this send (bot.cards.send_id),
        so a retry after a timeout that WeCom had in fact accepted is refused as a
        known task_id, which the client reports as delivered, without a code: the ref
        is then "<task_id>|" and the member's first click brings one.
        """
        task_id = send_id(card, card_id, outbox_id)
        sent = await self.client.send_template_card(recipient, self._card(card, task_id))
        if sent.response_code:
            return make_ref(task_id, sent.response_code)
        if not card.buttons:  # a text_notice: nothing to click, so never updatable
            return NOT_UPDATABLE
        log.info(
            "wecom card %s to %s: no response_code yet; a click brings one", card_id, recipient
        )
        return make_ref(task_id, "")

    async def update_card(
        self, recipient: str, platform_ref: str, card: Card, *, card_id: int
    ) -> str | None:
        """Replace `recipient`'s copy with the card as it now stands; the code is used up.

        A full card (not `button.replace_name`) so the card itself says who decided
        and when; `replace_text` greys its buttons out. A response_code lives 72 h
        and works once: with none left (used, expired, or never given) the update
        is not a failure to dead-letter but waits for the member. The card record
        then holds no code ("<task_id>|"), and a click on the stale card, which
        carries a fresh code, shows the closed card again at once
        (handlers/actions.py, notify.show_again).
        """
        if platform_ref == NOT_UPDATABLE:
            return None
        task_id, code = split_ref(platform_ref)
        if not task_id:
            raise RetryableError(f"wecom card {card_id} for {recipient} is not shown yet")
        if not code:  # also a second update of a copy a click just fixed: nothing to do
            log.info(
                "wecom card %s for %s: no response_code left; shown again on its next click",
                card_id,
                recipient,
            )
            return None  # the record keeps any code a click stored meanwhile
        try:
            await self.client.update_template_card(
                [recipient], code, card=self._card(card, task_id)
            )
        except WecomApiError as exc:
            if exc.errcode not in CODE_SPENT:
                raise
            log.warning(
                "wecom card %s for %s: response_code used or expired (errcode %s); "
                "shown again on its next click",
                card_id,
                recipient,
                exc.errcode,
            )
        return make_ref(task_id, "")

    async def send_text(
        self, recipient: str, text: str, *, outbox_id: int, retry: bool = False
    ) -> None:
        """A text has no id WeCom could refuse twice, as a card's task_id is: a retry
        asks message/send's duplicate check instead, so the piece an earlier attempt
        delivered (its answer lost, its worker killed) is not shown again. First
        attempts never ask, so a member who asks twice gets the same answer twice."""
        for piece in split_text(text, TEXT_BYTES):
            await self.client.send_text(recipient, piece, dedupe=retry)

    async def send_markdown(
        self, recipient: str, title: str, text: str, *, retry: bool = False
    ) -> None:
        """message/send `markdown` (at most 2,048 bytes: cut at a line end); a retry
        asks the duplicate check, as a text's does."""
        await self.client.send_markdown(recipient, fit_markdown(text, TEXT_BYTES), dedupe=retry)

    async def send_image(self, recipient: str, png: bytes) -> None:
        """media/upload the PNG, then message/send `image` with its media_id."""
        media_id = await self.client.upload_media("image", Upload("media", "digest.png", png, PNG))
        await self.client.send(recipient, "image", {"media_id": media_id})

    async def fetch_media(self, media_id: str) -> Media:
        """A photo an `ImageMessage` named (media/get; JSON errors raise)."""
        return await download(self.client, media_id)


def build_platforms(
    settings: WecomSettings,
    renderer: CardRenderer,
    http: Callable[[], aiohttp.ClientSession],
    *,
    link: str = "",
    alert: Alert | None = None,
) -> dict[str, WecomPlatform | WecomRobotPlatform | WecomChatPlatform]:
    """The enabled WeCom platforms by name: the app (corp_id + secret), its group chats
    (used by roles with a `wecom_chat_id`) and its robots.

    `robots` ({name: webhook key}) is read from settings once they carry it.
    """
    client = WecomClient(settings, http, alert=alert)  # alert: setup faults, once per outage
    platforms: dict[str, WecomPlatform | WecomRobotPlatform | WecomChatPlatform] = {}
    if settings.enabled:
        platforms[NAME] = WecomPlatform(client, renderer, link=link)
        platforms[CHAT_PLATFORM] = WecomChatPlatform(client, renderer)
    if settings.robots:
        platforms[ROBOT_PLATFORM] = WecomRobotPlatform(client, renderer, settings.robots)
    return platforms
