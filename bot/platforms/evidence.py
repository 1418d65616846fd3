"""Photos sent in chat, kept: the outbox downloads them from the platform into files.

A WeCom media_id lives three days; an evidence photo of a damaged parcel must
outlive the dispute. The handler records the photo and enqueues `media.fetch`
(destination `<platform>:media`); this performer downloads it through the
platform and writes `<evidence_dir>/<case>/<evidence id>.<ext>` atomically, so a
redelivery overwrites the same file with the same bytes.
"""

from __future__ import annotations

import asyncio
import mimetypes
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol

from bot.outbox import Performer, PermanentError
from bot.platforms.base import split_destination
from storage.models import OutboxMessage

FETCH_KIND = "media.fetch"
_EXTENSIONS = {"image/jpeg": ".jpg", "image/png": ".png", "image/gif": ".gif"}


class MediaFile(Protocol):
    content: bytes
    content_type: str


class MediaSource(Protocol):
    async def fetch_media(self, media_id: str) -> MediaFile:
        """The bytes behind a platform media handle."""


def extension(content_type: str) -> str:
    kind = content_type.split(";")[0].strip().lower()
    return _EXTENSIONS.get(kind) or mimetypes.guess_extension(kind) or ".bin"


def _write(path: Path, content: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(path.suffix + ".part")
    partial.write_bytes(content)
    os.replace(partial, path)


def media_performers(platforms: Mapping[str, object], evidence_dir: Path) -> dict[str, Performer]:
    """The `media.fetch` performer; its result's `path` is relative to `evidence_dir`."""

    async def fetch(msg: OutboxMessage) -> dict[str, Any]:
        name, _ = split_destination(msg.destination)
        source = platforms.get(name)
        if source is None or not hasattr(source, "fetch_media"):
            raise PermanentError(f"platform {name!r} cannot download media")
        media: MediaFile = await source.fetch_media(msg.payload["media_id"])
        evidence_id = int(msg.payload["evidence_id"])
        relative = Path(str(msg.case_id)) / f"{evidence_id}{extension(media.content_type)}"
        await asyncio.to_thread(_write, evidence_dir / relative, media.content)
        return {"evidence_id": evidence_id, "path": relative.as_posix()}

    return {FETCH_KIND: fetch}
