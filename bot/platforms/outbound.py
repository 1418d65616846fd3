"""What every platform's API client shares: a bounded answer, texts cut to size."""

from __future__ import annotations

import aiohttp

from bot.outbox import PermanentError


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
