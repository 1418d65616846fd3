"""WeCom group robots (群机器人): `webhook/send?key=…`, notices only.

A robot has no click callback, so cards go out as markdown without buttons and
are never updated. Each robot takes 20 messages a minute: the outbox enforces it
per destination `wecom-robot:<robot name>` (bot/app.py's rate limits use
ROBOT_PREFIX). The recipient is the robot's name from config; its key, which is
the only credential, stays in settings and never lands in the outbox table.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Mapping

from bot.cards import Card, CardRenderer, defang
from bot.outbox import PermanentError
from bot.platforms.outbound import split_text
from bot.platforms.wecom_client import WecomClient
from bot.platforms.wecom_events import NOT_UPDATABLE

ROBOT_PLATFORM = "wecom-robot"
ROBOT_PREFIX = f"{ROBOT_PLATFORM}:"  # outbox destination prefix, for rate_limits
ROBOT_PER_MINUTE = 20
ROBOT_TEXT_BYTES = 2048
ROBOT_MARKDOWN_BYTES = 4096  # webhook markdown content: longer is refused, not cut
ROBOT_IMAGE_BYTES = 2 << 20  # webhook image: at most 2 MB before base64, JPG or PNG
CUT_NOTE = "\n…（内容过长，已截断，请在应用中查看）"


def fit_markdown(content: str, limit: int = ROBOT_MARKDOWN_BYTES) -> str:
    """At most `limit` UTF-8 bytes, cut at a line end (a cut mid-line could split a
    `<font>` tag) and marked, so a card with many SKU lines still goes out."""
    if len(content.encode()) <= limit:
        return content
    budget = limit - len(CUT_NOTE.encode())
    kept, size = [], 0
    for line in content.splitlines(keepends=True):
        size += len(line.encode())
        if size > budget:
            break
        kept.append(line)
    head = "".join(kept) or content.encode()[:budget].decode(errors="ignore")
    return head.rstrip("\n") + CUT_NOTE


class WecomRobotPlatform:
    """Group robots (群机器人): notices only, they have no click callback.

    The recipient is a robot's name from config; its webhook key stays in settings.
    """

    name = ROBOT_PLATFORM

    def __init__(
        self, client: WecomClient, renderer: CardRenderer, robots: Mapping[str, str]
    ) -> None:
        self.client = client
        self.renderer = renderer
        self.robots = dict(robots)

    def _key(self, recipient: str) -> str:
        key = self.robots.get(recipient)
        if not key:
            raise PermanentError(f"no wecom robot named {recipient!r} in config")
        return key

    async def send_card(self, recipient: str, card: Card, *, card_id: int, outbox_id: int) -> str:
        message = self.renderer.render(ROBOT_PLATFORM, defang(card))
        markdown = message.get("markdown")
        if isinstance(markdown, dict) and isinstance(markdown.get("content"), str):
            markdown["content"] = fit_markdown(markdown["content"])
        await self.client.robot_send(self._key(recipient), message)
        return NOT_UPDATABLE

    async def update_card(
        self, recipient: str, platform_ref: str, card: Card, *, card_id: int
    ) -> str | None:
        return None  # a robot message cannot be changed; the decision shows in the app

    async def send_markdown(
        self, recipient: str, title: str, text: str, *, retry: bool = False
    ) -> None:
        message = {"msgtype": "markdown", "markdown": {"content": fit_markdown(text)}}
        await self.client.robot_send(self._key(recipient), message)

    async def send_image(self, recipient: str, png: bytes) -> None:
        """webhook `image`: the picture inline as base64, with the md5 of its raw bytes."""
        if len(png) > ROBOT_IMAGE_BYTES:
            raise PermanentError(f"wecom robot image of {len(png)} bytes is over 2 MB")
        image = {"base64": base64.b64encode(png).decode(), "md5": hashlib.md5(png).hexdigest()}  # noqa: S324 - the API's checksum
        await self.client.robot_send(self._key(recipient), {"msgtype": "image", "image": image})

    async def send_text(
        self, recipient: str, text: str, *, outbox_id: int, retry: bool = False
    ) -> None:
        key = self._key(recipient)
        for piece in split_text(text, ROBOT_TEXT_BYTES):
            await self.client.robot_send(key, {"msgtype": "text", "text": {"content": piece}})
