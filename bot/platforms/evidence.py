"""Photos sent in chat, kept: the outbox downloads them from the platform into the store.

A WeCom media_id lives three days; an evidence photo of a damaged parcel must
outlive the dispute. The handler enqueues `media.fetch` (destination
`<platform>:media`); this performer downloads the photo through the platform,
keeps it in the content-addressed store (storage/evidence.py, in a thread) and
hands the workflow a `PhotoStored` event through the dispatcher, which records it
before answering: decoding and matching run there, after the bytes are safe, never
in this delivery. A photo over `photos.max_bytes` is not stored; the event says
so. A redelivery writes the same file and announces the same key, which the
dispatcher drops as a duplicate.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Protocol

from bot.events import TOO_LARGE, PhotoStored, Sender
from bot.outbox import Performer, PermanentError, RetryableError
from bot.platforms.base import split_destination
from storage.evidence import EvidenceStore
from storage.models import OutboxMessage

FETCH_KIND = "media.fetch"
Announce = Callable[[PhotoStored], Awaitable[bool]]


class MediaFile(Protocol):
    content: bytes
    content_type: str


class MediaSource(Protocol):
    async def fetch_media(self, media_id: str) -> MediaFile:
        """The bytes behind a platform media handle."""


async def keep(
    store: EvidenceStore,
    content: bytes,
    content_type: str,
    max_bytes: int,
    key: str,
    sender: Sender,
) -> PhotoStored:
    """The event for a downloaded or uploaded photo, stored unless it is too large."""
    if len(content) > max_bytes:
        return PhotoStored(key, sender, size=len(content), problem=TOO_LARGE)
    stored = await asyncio.to_thread(store.put, content, content_type)
    return PhotoStored(key, sender, stored.sha256, stored.content_type, stored.size)


def media_performers(
    platforms: Mapping[str, object], store: EvidenceStore, announce: Announce, max_bytes: int
) -> dict[str, Performer]:
    """The `media.fetch` performer; its result names the stored file by hash."""

    async def fetch(msg: OutboxMessage) -> dict[str, Any]:
        name, _ = split_destination(msg.destination)
        source = platforms.get(name)
        if source is None or not hasattr(source, "fetch_media"):
            raise PermanentError(f"platform {name!r} cannot download media")
        media: MediaFile = await source.fetch_media(msg.payload["media_id"])
        sender = Sender(**msg.payload["sender"])
        event = await keep(
            store, media.content, media.content_type, max_bytes, msg.payload["photo_key"], sender
        )
        if not await announce(event):
            raise RetryableError("shutting down: the photo is handed over after the restart")
        return {"sha256": event.sha256, "size": event.size, "problem": event.problem}

    return {FETCH_KIND: fetch}
