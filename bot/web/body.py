"""Inbound bodies, shared by every inbound route: reading one with a hard size
limit, and the characters a text from one must not carry into storage.

`StreamReader.read(n)` answers with whatever has arrived, which may be the first
TCP segment only; a route that parsed that would refuse (or misread) a body that
was merely slow. `read_body` reads to the end of the body, and stops as soon as
the limit is passed, so a huge or chunked body (no Content-Length to trust) is
never buffered whole.
"""

from __future__ import annotations

import json
import re
from typing import Any

from aiohttp import web

CHUNK = 64 * 1024
_CONTROL = re.compile(r"[\x00-\x1f\x7f\ud800-\udfff]")
_CONTROL_BUT_LINES = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\ud800-\udfff]")


def unsafe_text(value: str, *, lines: bool = False) -> bool:
    """True if `value` holds a control character (line breaks and tabs allowed when
    `lines`) or a lone surrogate. JSON can carry both; stored, a surrogate cannot be
    encoded as UTF-8 again (every later read fails) and PostgreSQL refuses NUL."""
    return bool((_CONTROL_BUT_LINES if lines else _CONTROL).search(value))


def json_value(raw: str | bytes) -> Any:
    """JSON from outside, or ValueError: bad UTF-8, bad JSON, or nesting deeper than the
    parser's recursion limit, whose RecursionError is no ValueError and would be a 500
    (with a traceback in the log) for 20 KB of `[`, often before any signature check."""
    try:
        return json.loads(raw)
    except RecursionError:
        raise ValueError("JSON is nested too deeply") from None


class BodyTooLarge(Exception):
    """The body is over `limit` bytes; `size` is as much of it as was seen."""

    def __init__(self, limit: int, size: int) -> None:
        super().__init__(f"body is larger than {limit} bytes")
        self.limit = limit
        self.size = size


async def read_body(request: web.Request, limit: int) -> bytes:
    """The whole raw body, or BodyTooLarge as soon as it would exceed `limit` bytes."""
    declared = request.content_length
    if declared is not None and declared > limit:
        raise BodyTooLarge(limit, declared)
    body = bytearray()
    while chunk := await request.content.read(min(CHUNK, limit + 1 - len(body))):
        body += chunk
        if len(body) > limit:
            raise BodyTooLarge(limit, len(body))
    return bytes(body)
