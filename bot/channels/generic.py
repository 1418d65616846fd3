"""The generic channel: any OMS/ERP pushes return requests, we POST case events back.

Inbound (`POST /webhooks/generic`, CONTRACT.md "Generic channel"), in this order
and before anything is parsed or stored: the channel must be configured, the
body is read up to `server.max_body_bytes` and no further, the timestamp must be
inside the replay window (both directions; the clock is injected) and the
HMAC-SHA256 signature over `timestamp + "." + raw body` must match
(`hmac.compare_digest`). Only then is the JSON validated (generic_body.py) and
handed to the intake, which dedupes, stores and routes it in a transaction shared
with the other events that arrived meanwhile (bot/writer.py); the answer (202)
goes after that commit, or 409 when the event
conflicts with the case (intake rolled it back). Every refusal is a 4xx/503
with a JSON `{"error": ...}`, logged with its reason, and stores nothing.

Outbound (`GenericClient`): case events and refund commands are POSTed to
`callback_url`, signed the same way. With no `callback_url` there is nothing to
send and the row counts as delivered: the OMS then reads `/api/cases` instead.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
from collections.abc import Awaitable, Callable, Mapping
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

import aiohttp
from aiohttp import web

from bot.appkeys import CTX, DISPATCH
from bot.channels.generic_body import CHANNEL, Rejected, parse
from bot.events import ReturnRequest
from bot.outbox import PermanentError, RetryableError
from bot.settings import GenericChannelSettings
from bot.web.body import BodyTooLarge, read_body
from bot.web.edge import cannot_store
from bot.writer import Closed

log = logging.getLogger(__name__)

ROUTE = "/webhooks/generic"
TIMESTAMP_HEADER = "X-Returnhub-Timestamp"
SIGNATURE_HEADER = "X-Returnhub-Signature"
RETRYABLE_STATUS = frozenset({408, 425, 429})

# The intake (the group-commit writer's, handlers/intake_submit.py `via_writer`), passed
# in by bot/app.py: adapters never import handlers. It answers once the event's batch
# committed. Its result is used duck-typed (.case_id, .duplicate,
# .refused: why the event conflicts with the case, answered 409 with nothing stored).
OnRequest = Callable[[ReturnRequest, Any], Awaitable[Any]]
INTAKE: web.AppKey[OnRequest] = web.AppKey("generic_intake")


def sign(secret: str, timestamp: str, body: bytes) -> str:
    """Hex HMAC-SHA256(secret, timestamp + "." + raw body), both directions."""
    message = timestamp.encode("ascii") + b"." + body
    return hmac.new(secret.encode("utf-8"), message, hashlib.sha256).hexdigest()


def verify(
    secret: str, headers: Mapping[str, str], body: bytes, now: datetime, window: int
) -> None:
    """Raise Rejected(401) unless the request is signed with `secret` inside the window."""
    timestamp = headers.get(TIMESTAMP_HEADER, "").strip()
    signature = headers.get(SIGNATURE_HEADER, "").strip().lower()
    if not timestamp:
        raise Rejected(401, f"missing {TIMESTAMP_HEADER} header")
    if not signature:
        raise Rejected(401, f"missing {SIGNATURE_HEADER} header")
    if not (timestamp.isascii() and timestamp.isdigit() and len(timestamp) <= 12):
        raise Rejected(401, f"{TIMESTAMP_HEADER} must be unix seconds")
    skew = now.timestamp() - int(timestamp)
    if abs(skew) > window:
        raise Rejected(401, f"{TIMESTAMP_HEADER} is outside the {window} s replay window")
    expected = sign(secret, timestamp, body)
    if not signature.isascii() or not hmac.compare_digest(signature, expected):
        raise Rejected(401, f"{SIGNATURE_HEADER} does not match the body")


def setup(app: web.Application, on_request: OnRequest) -> None:
    """Mount `POST /webhooks/generic`; `on_request(event, ctx)` is the intake handler."""
    app[INTAKE] = on_request
    app.router.add_post(ROUTE, receive)


async def signed_body(request: web.Request) -> bytes:
    """The raw body of a request signed with the channel's secret; Rejected otherwise."""
    ctx = request.app[CTX]
    conf = ctx.settings.channels.generic
    if not conf.secret:
        raise Rejected(503, "generic channel not configured")
    try:
        raw = await read_body(request, ctx.settings.server.max_body_bytes)
    except BodyTooLarge as exc:
        raise Rejected(413, str(exc)) from None
    verify(conf.secret, request.headers, raw, ctx.clock(), conf.replay_window_seconds)
    return raw


def answer(status: int, body: dict[str, Any]) -> web.Response:
    return web.json_response(
        body, status=status, dumps=lambda d: json.dumps(d, ensure_ascii=False)
    )


async def receive(request: web.Request) -> web.Response:
    """Verify, validate, store and route; 202 with the case id once committed."""
    ctx = request.app[CTX]
    try:
        raw = await signed_body(request)
        event = parse(raw, default_shop=ctx.settings.channels.generic.shop, now=ctx.clock())
    except Rejected as exc:
        log.warning(
            "generic webhook from %s refused (%d): %s", request.remote, exc.status, exc.message
        )
        return answer(exc.status, {"error": exc.message})
    try:
        if not request.app[DISPATCH].accepting:
            raise Closed("shutting down")
        result = await request.app[INTAKE](event, ctx)
    except Exception as exc:
        return cannot_store(exc, f"generic webhook {event.key}")
    if result.refused:
        log.warning("generic webhook %s refused (409): %s", event.key, result.refused)
        return answer(409, {"error": result.refused, "case_id": result.case_id})
    log.info(
        "generic webhook %s (%s %s) -> case %s%s",
        event.key,
        event.external_id,
        event.status,
        result.case_id,
        " (duplicate)" if result.duplicate else "",
    )
    return answer(202, {"case_id": result.case_id, "duplicate": result.duplicate})


class GenericClient:
    """POSTs case events and refund commands to the OMS's `callback_url`, signed.

    2xx is accepted; 408/425/429/5xx, timeouts and connection errors are retried by
    the outbox with backoff; any other answer (4xx, a redirect) never will be and
    dead-letters. The body carries `event_id`, stable across retries of one row.
    """

    name = CHANNEL

    def __init__(
        self,
        settings: GenericChannelSettings,
        http: aiohttp.ClientSession,
        clock: Callable[[], datetime],
    ) -> None:
        self.settings = settings
        self.http = http
        self.clock = clock

    async def send_event(self, payload: dict[str, Any], event_id: str) -> None:
        await self._post(payload, event_id)

    async def refund(self, payload: dict[str, Any], event_id: str) -> bool:
        """The OMS refunds on `refund_released`; `refund_id` (the case id) is its key.

        Without a callback_url nobody was asked: the case stays `refund_pending`
        until the OMS posts `status: "refunded"` to the webhook.
        """
        return await self._post(payload, event_id)

    async def _post(self, payload: dict[str, Any], event_id: str) -> bool:
        url = self.settings.callback_url
        what = f"{payload.get('event')} for case {payload.get('case_id')} ({event_id})"
        if not url:
            log.debug("generic: no callback_url; %s not sent (the OMS reads /api/cases)", what)
            return False
        if not self.settings.secret:
            raise PermanentError("channels.generic.secret is empty: refusing unsigned callbacks")
        head = ("event", "case_id", "external_id", "shop", "status", "occurred_at")
        body = {"event_id": event_id, **{k: payload.get(k) for k in head}}
        body.update((k, v) for k, v in payload.items() if k not in body)
        raw = json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
        timestamp = str(int(self.clock().timestamp()))
        headers = {
            "Content-Type": "application/json; charset=utf-8",
            TIMESTAMP_HEADER: timestamp,
            SIGNATURE_HEADER: sign(self.settings.secret, timestamp, raw),
        }
        host = urlsplit(url).netloc  # never log the full URL: it may carry a token
        try:
            async with self.http.post(
                url, data=raw, headers=headers, allow_redirects=False
            ) as response:
                status = response.status
                detail = (await response.content.read(200)).decode("utf-8", "replace")
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise RetryableError(f"{host}: {type(exc).__name__}: {exc}") from exc
        if 200 <= status < 300:
            log.info("generic: delivered %s to %s", what, host)
            return True
        message = f"{host} answered {status}: {detail.strip()[:200]}"
        if status in RETRYABLE_STATUS or status >= 500:
            raise RetryableError(message)
        raise PermanentError(message)
