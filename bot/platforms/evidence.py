"""Photos sent in chat, kept: the outbox downloads them from the platform into the store.

A WeCom media_id lives three days; an evidence photo of a damaged parcel must
outlive the dispute. The handler enqueues `media.fetch` (destination
`<platform>:media`); this performer downloads the photo through the platform,
keeps it in the content-addressed store (storage/evidence.py, in a thread) and
hands the workflow a `PhotoStored` event through the dispatcher, which records it
before answering: decoding and matching run there, after the bytes are safe, never
in this delivery. A photo over `photos.max_bytes` is not stored; the event says
so. A redelivery writes the same file and announces the same key, which the
dispatcher drops as a duplicate. A store that cannot write (disk full) alerts the
admins once and tells the sender (`Keeper`).
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Protocol

from bot.events import TOO_LARGE, PhotoStored, Sender
from bot.outbox import Performer, PermanentError, RetryableError
from bot.platforms.base import split_destination
from storage.evidence import EvidenceStore
from storage.models import OutboxMessage

log = logging.getLogger(__name__)

FETCH_KIND = "media.fetch"
Announce = Callable[[PhotoStored], Awaitable[bool]]
Alert = Callable[[str], Awaitable[None]]
Reply = Callable[[Sender, str], Awaitable[None]]  # a chat text to the photo's sender

ALERT_ZH = (
    "⚠ 证据照片无法保存：{root} 写入失败（{reason}）。请尽快清理磁盘空间；"
    "聊天照片会自动重试，控制台上传需重新上传"
)
UPLOAD_FULL_ZH = "照片未能保存：证据存储空间不足，已通知管理员，请稍后重新上传"
CHAT_FULL_ZH = "照片暂未保存：证据存储空间不足，已通知管理员；空间恢复后会自动保存，无需重发"


class MediaFile(Protocol):
    content: bytes
    content_type: str


class MediaSource(Protocol):
    async def fetch_media(self, media_id: str) -> MediaFile:
        """The bytes behind a platform media handle."""


class StoreFull(RetryableError):
    """The evidence store could not write the photo (disk full, read-only, quota)."""


class Keeper:
    """Keeps photos in the store, and says so when the store cannot write.

    A full disk (ENOSPC) or any other OSError of the write is not a bug in one photo:
    every photo fails until someone frees space. So the admins are alerted on the
    first failure and not again until a photo was kept (one alert per outage, not one
    per photo or retry), and the caller gets `StoreFull` to tell its sender; nothing
    is recorded for the photo, so the case is as it was."""

    def __init__(self, store: EvidenceStore, max_bytes: int, alert: Alert) -> None:
        self.store = store
        self.max_bytes = max_bytes
        self.alert = alert
        self.failing = False

    async def keep(
        self, content: bytes, content_type: str, key: str, sender: Sender
    ) -> PhotoStored:
        """The event for a downloaded or uploaded photo, stored unless it is too large."""
        if len(content) > self.max_bytes:
            return PhotoStored(key, sender, size=len(content), problem=TOO_LARGE)
        try:
            stored = await asyncio.to_thread(self.store.put, content, content_type)
        except OSError as exc:
            reason = os.strerror(exc.errno) if exc.errno else type(exc).__name__
            log.error("evidence store %s: photo %s not kept: %s", self.store.root, key, exc)
            if not self.failing:
                self.failing = True
                try:
                    await self.alert(ALERT_ZH.format(root=self.store.root, reason=reason))
                except Exception:
                    log.exception("evidence store: the admins could not be alerted")
            raise StoreFull(f"evidence store: {reason}") from exc
        self.failing = False
        return PhotoStored(key, sender, stored.sha256, stored.content_type, stored.size)


def media_performers(
    platforms: Mapping[str, object], keeper: Keeper, announce: Announce, reply: Reply
) -> dict[str, Performer]:
    """The `media.fetch` performer; its result names the stored file by hash. With the
    store unable to write, the sender is told once and the download is retried (a
    WeCom media_id lives three days; the retries last one)."""

    async def fetch(msg: OutboxMessage) -> dict[str, Any]:
        name, _ = split_destination(msg.destination)
        source = platforms.get(name)
        if source is None or not hasattr(source, "fetch_media"):
            raise PermanentError(f"platform {name!r} cannot download media")
        media: MediaFile = await source.fetch_media(msg.payload["media_id"])
        sender = Sender(**msg.payload["sender"])
        try:
            event = await keeper.keep(
                media.content, media.content_type, msg.payload["photo_key"], sender
            )
        except StoreFull:
            # The row's first StoreFull (an earlier attempt may have failed otherwise,
            # a media/get error, say): its last_error then names no StoreFull yet.
            if not (msg.last_error or "").startswith(StoreFull.__name__):
                await reply(sender, CHAT_FULL_ZH)
            raise
        if not await announce(event):
            raise RetryableError("shutting down: the photo is handed over after the restart")
        return {"sha256": event.sha256, "size": event.size, "problem": event.problem}

    return {FETCH_KIND: fetch}
