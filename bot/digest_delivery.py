"""Outbox performers for the daily digest (handlers/digest.py): its markdown, and its
chart drawn from the row's figures (bot/digest_chart.py) and sent as a picture.

A platform with a `send_markdown` gets the markdown as such; one without (the
console) gets it as its text. The chart is drawn in a thread: Pillow holds the GIL
less than it blocks the loop, and a 960×420 PNG takes tens of milliseconds.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any, Protocol, runtime_checkable

from bot import digest_chart
from bot.outbox import Performer, PermanentError
from bot.platforms.base import Platform, platform_for
from handlers.digest import IMAGE_KIND, MARKDOWN_KIND
from storage.models import OutboxMessage


@runtime_checkable
class MarkdownPlatform(Protocol):
    async def send_markdown(
        self, recipient: str, title: str, text: str, *, retry: bool = False
    ) -> None: ...


@runtime_checkable
class ImagePlatform(Protocol):
    async def send_image(self, recipient: str, png: bytes) -> None: ...


def digest_performers(platforms: Mapping[str, Platform]) -> dict[str, Performer]:
    async def send_markdown(msg: OutboxMessage) -> dict[str, Any]:
        platform, recipient = platform_for(platforms, msg)
        title, text = str(msg.payload["title"]), str(msg.payload["markdown"])
        retry = bool(msg.attempts)  # an earlier attempt may have got through
        if isinstance(platform, MarkdownPlatform):
            await platform.send_markdown(recipient, title, text, retry=retry)
        else:
            await platform.send_text(recipient, text, outbox_id=msg.id, retry=retry)
        return {}

    async def send_image(msg: OutboxMessage) -> dict[str, Any]:
        platform, recipient = platform_for(platforms, msg)
        if not isinstance(platform, ImagePlatform):
            raise PermanentError(f"{msg.destination}: the platform takes no pictures")
        try:
            png = await asyncio.to_thread(digest_chart.render, msg.payload["chart"])
        except digest_chart.NoFont as exc:
            raise PermanentError(f"digest chart: {exc}") from None
        await platform.send_image(recipient, png)
        return {}

    return {MARKDOWN_KIND: send_markdown, IMAGE_KIND: send_image}
