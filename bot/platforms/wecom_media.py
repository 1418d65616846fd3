"""Downloading temporary media (photos sent to the bot) with `media/get`.

A `media_id` is valid for 3 days. Success is the file's bytes with its content
type; failure is a JSON errcode (e.g. 40007 invalid media_id) served with a
JSON or text content type, so the type is checked before anything is kept. Big
files must be fetched with `Range` (chunks of at most 20 MB, answers 206),
otherwise WeCom refuses with 830002; we always ask in chunks.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp

from bot.outbox import PermanentError, RetryableError
from bot.platforms.inbound import is_opaque
from bot.platforms.wecom_client import WecomClient
from bot.platforms.wecom_errors import SetupFault, TokenRejected, check
from bot.platforms.wecom_events import OPAQUE_MAX

MEDIA_MAX = 20 << 20
MEDIA_CHUNK = 4 << 20
MEDIA_TIMEOUT = aiohttp.ClientTimeout(total=60, connect=5)
PATH = "media/get"
_RANGE = re.compile(r"bytes (\d+)-(\d+)/(\d+|\*)")
_FILENAME = re.compile(r'filename="?([^";]+)"?')
_JSON_TYPES = ("application/json", "text/json")


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
    Every 206 must move on from where the last one ended, and the number of
    requests is bounded, so an odd server cannot keep us looping.
    """
    if not is_opaque(media_id, OPAQUE_MAX):  # what the callback parser accepted
        raise PermanentError(f"wecom media/get: media_id is not 1-{OPAQUE_MAX} printable chars")
    token = await client.access_token()
    parts: list[bytes] = []
    start, refreshed, filename = 0, False, ""
    # Bounded: a server that answers whole chunks needs ceil(max_bytes / chunk) requests.
    for _ in range(2 * -(-max_bytes // chunk) + 2):
        status, head, raw = await client.fetch(
            "GET",
            PATH,
            params={"access_token": token, "media_id": media_id},
            headers={"Range": f"bytes={start}-{start + chunk - 1}"},
            limit=max_bytes,
            client_timeout=MEDIA_TIMEOUT,
        )
        content_type = head.get("Content-Type", "")
        error = _error_answer(client, content_type, raw)
        if error is not None:
            try:
                check(PATH, error)
            except SetupFault as fault:
                raise await client.fault(PATH, fault) from None
            except TokenRejected:
                if refreshed:
                    raise RetryableError("wecom media/get: token refused twice") from None
                refreshed, token = True, await client.access_token(stale=token)
                continue
            raise PermanentError("wecom media/get: a JSON answer instead of the file")
        if status == 416 and parts:  # length unknown ("/*") and it ended on a chunk edge
            return Media(b"".join(parts), content_type, filename)
        client.http_status(PATH, status)
        filename = filename or _filename(head.get("Content-Disposition", ""))
        if status != 206:  # the server sent the whole file at once
            return Media(raw, content_type, filename)
        last, total = _content_range(head.get("Content-Range", ""), start, len(raw))
        if max(last + 1, total or 0) > max_bytes:
            raise PermanentError(f"wecom media/get: file is over the limit ({max_bytes} bytes)")
        parts.append(raw)
        start = last + 1
        # Length unknown ("/*"): a chunk shorter than asked for is the last one.
        done = len(raw) < chunk if total is None else start >= total
        if done:
            return Media(b"".join(parts), content_type, filename)
    raise RetryableError("wecom media/get: too many partial answers")


def _error_answer(client: WecomClient, content_type: str, raw: bytes) -> Mapping[str, Any] | None:
    """WeCom's JSON error (`{"errcode": …}`), or None when `raw` is (part of) the file.

    Errors come as JSON, sometimes labelled text/plain; a text file is still a file.
    """
    kind = content_type.split(";")[0].strip().lower()
    if kind in _JSON_TYPES:
        return client.decode(PATH, 200, raw)
    if kind in ("", "text/plain") and raw.lstrip()[:1] == b"{":
        try:
            data = json.loads(raw)
        except ValueError:
            return None
        return data if isinstance(data, dict) and "errcode" in data else None
    return None


def _filename(disposition: str) -> str:
    found = _FILENAME.search(disposition)
    return found.group(1).strip().replace("/", "_").replace("\\", "_")[:128] if found else ""


def _content_range(value: str, start: int, size: int) -> tuple[int, int | None]:
    """(last, total or None when "*") of a 206 that starts at `start` and carries `size`
    bytes; anything else (a gap, an overlap, no progress) is retryable."""
    found = _RANGE.fullmatch(value.strip())
    if found is None or int(found.group(1)) != start or size < 1:
        raise RetryableError("wecom media/get: 206 without a matching Content-Range")
    last = int(found.group(2))
    if last - start + 1 != size:
        raise RetryableError("wecom media/get: 206 body does not match Content-Range")
    return last, int(found.group(3)) if found.group(3) != "*" else None
