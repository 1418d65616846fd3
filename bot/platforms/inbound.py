"""What every platform's callback route shares: refusals, a bounded body, the clock.

`CallbackRejected(status, reason)` is how a verifier says no: the route answers
4xx with `{"error": reason}` and logs it; the reason never carries a secret or
the payload. `read_body` reads at most `limit` bytes (a Content-Length over it is
refused before reading). `epoch` turns the app's injectable clock (naive UTC
datetimes) into the epoch seconds signature windows are checked against.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError


class CallbackRejected(Exception):
    """A callback we refuse: `status` is the HTTP answer, `reason` is safe to log."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


def refuse(request: web.Request, exc: CallbackRejected, log: logging.Logger) -> web.Response:
    """The 4xx answer `{"error": reason}`, the reason logged with who sent it."""
    log.warning(
        "%s %s refused (%d) from %s: %s",
        request.method,
        request.path,
        exc.status,
        request.remote,
        exc.reason,
    )
    return web.json_response({"error": exc.reason}, status=exc.status)


def epoch(clock: Callable[[], datetime]) -> Callable[[], float]:
    """Epoch seconds on `clock` (naive datetimes are UTC)."""

    def now() -> float:
        moment = clock()
        return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()

    return now


async def read_body(request: web.Request, limit: int) -> bytes:
    """The raw body, at most `limit` bytes (413 beyond); an undecodable body is a 400."""
    if request.content_length is not None and request.content_length > limit:
        raise CallbackRejected(413, f"body over {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    try:
        async for chunk in request.content.iter_chunked(8192):
            size += len(chunk)
            if size > limit:
                raise CallbackRejected(413, f"body over {limit} bytes")
            chunks.append(chunk)
    except (web.RequestPayloadError, HttpProcessingError):
        # A Content-Encoding that does not decode, a broken chunked body: the sender's fault.
        raise CallbackRejected(400, "body could not be read (bad encoding)") from None
    return b"".join(chunks)


def is_opaque(value: str, limit: int) -> bool:
    """1 to `limit` characters, all printable (no control characters, no line breaks)."""
    return 0 < len(value) <= limit and value.isprintable()
