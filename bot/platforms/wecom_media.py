"""Downloading temporary media (photos sent to the bot) with `media/get`.

A `media_id` is valid for 3 days. Success is the file's bytes with its content
type; failure is a JSON errcode (e.g. 40007 invalid media_id) served with a
JSON or text content type, so the type is checked before anything is kept. Big
files must be fetched with `Range` (chunks of at most 20 MB, answers 206),
otherwise WeCom refuses with 830002; we always ask in chunks.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import aiohttp

from bot.outbox import PermanentError, RetryableError
from bot.platforms.wecom_client import TokenRejected, WecomClient, check

MEDIA_MAX = 20 << 20
MEDIA_CHUNK = 4 << 20
MEDIA_TIMEOUT = aiohttp.ClientTimeout(total=60, connect=5)
PATH = "media/get"
_MEDIA_ID = re.compile(r"[0-9A-Za-z_\-@.=+/]{1,512}")
_RANGE = re.compile(r"bytes (\d+)-(\d+)/(\d+|\*)")
_FILENAME = re.compile(r'filename="?([^";]+)"?')


@dataclass(frozen=True, slots=True)
class Media:
    content: bytes
    content_type: str
    filename: str


async def download(
    client: WecomClient, media_id: str, *, max_bytes: int = MEDIA_MAX, chunk: int = MEDIA_CHUNK
) -> Media:
    """The whole file, fetched in `Range` chunks; a JSON answer raises (never saved).

    A refused token is refreshed once; a file over `max_bytes` is a permanent error.
    """
    if not _MEDIA_ID.fullmatch(media_id):
        raise PermanentError("wecom media/get: malformed media_id")
    token = await client.access_token()
    parts: list[bytes] = []
    start, refreshed, filename = 0, False, ""
    while True:
        status, head, raw = await client.fetch(
            "GET",
            PATH,
            params={"access_token": token, "media_id": media_id},
            headers={"Range": f"bytes={start}-{start + chunk - 1}"},
            limit=max_bytes,
            client_timeout=MEDIA_TIMEOUT,
        )
        content_type = head.get("Content-Type", "")
        if _is_json(content_type, raw):
            try:
                check(PATH, client.decode(PATH, 200, raw))
            except TokenRejected:
                if refreshed:
                    raise RetryableError("wecom media/get: token refused twice") from None
                refreshed, token = True, await client.access_token(stale=token)
                continue
            raise PermanentError("wecom media/get: a JSON answer instead of the file")
        client.http_status(PATH, status)
        filename = filename or _filename(head.get("Content-Disposition", ""))
        if status != 206:  # the server sent the whole file at once
            return Media(raw, content_type, filename)
        first, last, total = _content_range(head.get("Content-Range", ""), start)
        if len(raw) != last - first + 1:
            raise RetryableError("wecom media/get: 206 body does not match Content-Range")
        if total > max_bytes:
            raise PermanentError(f"wecom media/get: file is {total} bytes, over the limit")
        parts.append(raw)
        start = last + 1
        if start >= total:
            return Media(b"".join(parts), content_type, filename)


def _is_json(content_type: str, raw: bytes) -> bool:
    kind = content_type.split(";")[0].strip().lower()
    return kind in ("application/json", "text/plain", "text/json") or (
        not kind and raw[:1] == b"{"
    )


def _filename(disposition: str) -> str:
    found = _FILENAME.search(disposition)
    return found.group(1).strip().replace("/", "_").replace("\\", "_")[:128] if found else ""


def _content_range(value: str, start: int) -> tuple[int, int, int]:
    """(first, last, total) of a 206 answer; a missing or odd header is retryable."""
    found = _RANGE.fullmatch(value.strip())
    if found is None or int(found.group(1)) != start:
        raise RetryableError("wecom media/get: 206 without a matching Content-Range")
    first, last = int(found.group(1)), int(found.group(2))
    total = int(found.group(3)) if found.group(3) != "*" else last + 1
    return first, last, total
