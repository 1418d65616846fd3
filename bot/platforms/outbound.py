"""What every platform's API client shares: one JSON exchange with its failures
mapped for the outbox, a bounded answer, texts cut to size."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp

from bot.outbox import PermanentError, RetryableError

PNG = "image/png"


@dataclass(frozen=True, slots=True)
class Upload:
    """One file as a multipart/form-data body (WeCom and DingTalk `media/upload`)."""

    field: str
    filename: str
    content: bytes
    content_type: str

    def encode(self) -> tuple[bytes, str]:
        """The body and its Content-Type; built as bytes so a retry sends it again."""
        boundary = "----returnhub" + hashlib.sha256(self.content).hexdigest()[:24]
        head = (
            f'--{boundary}\r\nContent-Disposition: form-data; name="{self.field}"; '
            f'filename="{self.filename}"; filelength={len(self.content)}\r\n'
            f"Content-Type: {self.content_type}\r\n\r\n"
        ).encode()
        tail = f"\r\n--{boundary}--\r\n".encode()
        return head + self.content + tail, f"multipart/form-data; boundary={boundary}"


async def exchange(
    session: aiohttp.ClientSession,
    method: str,
    url: str,
    label: str,
    *,
    scrub: Callable[[str], str],
    params: Mapping[str, str] | None = None,
    body: Mapping[str, Any] | None = None,
    headers: Mapping[str, str] | None = None,
    limit: int,
    client_timeout: aiohttp.ClientTimeout | None = None,
    upload: Upload | None = None,
) -> tuple[int, Mapping[str, str], bytes]:
    """One HTTP exchange, a JSON `body` sent as UTF-8 (or a file `upload`, multipart);
    transport failures are retryable (their text passed through `scrub`, so no
    credential reaches a log)."""
    send_headers = dict(headers or {})
    data = None
    if upload is not None:
        data, send_headers["Content-Type"] = upload.encode()
    elif body is not None:
        data = json.dumps(body, ensure_ascii=False).encode()
        send_headers["Content-Type"] = "application/json; charset=utf-8"
    # The session's own timeout applies unless the caller brings one (media).
    extra: dict[str, Any] = {"timeout": client_timeout} if client_timeout else {}
    try:
        async with session.request(
            method, url, params=params, data=data, headers=send_headers, **extra
        ) as resp:
            raw = await read_limited(resp, limit, label)
            return resp.status, resp.headers.copy(), raw
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise RetryableError(f"{label}: {type(exc).__name__}: {scrub(str(exc))}") from None


def http_status(label: str, status: int) -> None:
    """5xx, 408 and 429 are retryable, any other 4xx permanent."""
    if status >= 500 or status in (408, 429):
        raise RetryableError(f"{label}: HTTP {status}")
    if status >= 400:
        raise PermanentError(f"{label}: HTTP {status}")


def json_object(label: str, raw: bytes) -> Mapping[str, Any]:
    """The answer as a JSON object; anything else is retryable (a proxy's error page)."""
    try:
        data = json.loads(raw)
    except ValueError:
        raise RetryableError(f"{label}: answer is not JSON") from None
    if not isinstance(data, dict):
        raise RetryableError(f"{label}: answer is not a JSON object")
    return data


async def read_limited(resp: aiohttp.ClientResponse, limit: int, label: str) -> bytes:
    """The answer's body, refused (permanently) past `limit` bytes."""
    chunks: list[bytes] = []
    size = 0
    async for chunk in resp.content.iter_chunked(64 * 1024):
        size += len(chunk)
        if size > limit:
            raise PermanentError(f"{label}: answer larger than {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def split_text(text: str, limit: int) -> list[str]:
    """Pieces of at most `limit` UTF-8 bytes, cut at line ends where possible."""
    pieces: list[str] = []
    current = ""
    for line in text.splitlines(keepends=True):
        while len(line.encode()) > limit:  # one huge line: cut by characters
            cut = len(line.encode()[:limit].decode(errors="ignore"))
            if current:
                pieces.append(current)
                current = ""
            pieces.append(line[:cut])
            line = line[cut:]
        if len((current + line).encode()) > limit:
            pieces.append(current)
            current = ""
        current += line
    if current or not pieces:
        pieces.append(current)
    return [p.rstrip("\n") or p for p in pieces]
