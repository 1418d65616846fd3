"""The DingTalk Stream protocol's pieces: the open-connection call, frames, acks, backoff.

Facts (open-dingtalk/developerpedia `docs/learn/stream/protocol.md`, and the
official Python SDK `dingtalk_stream/frames.py`, `handlers.py`, `stream.py`):

- `POST {api_base}/v1.0/gateway/connections/open` with `clientId` (app key),
  `clientSecret` (app secret), `subscriptions` `[{type, topic}]` and `ua` answers
  `{endpoint, ticket}`; a ticket is valid 90 s for ONE connection, so every connect
  asks for a new one and none is stored;
- the WebSocket is `endpoint?ticket=…`; each frame is `{specVersion, type
  (SYSTEM|EVENT|CALLBACK), headers {topic, messageId, contentType, time}, data}` where
  `data` is a JSON *string* — for a CALLBACK the same JSON DingTalk would POST to
  the HTTP callback;
- every frame is answered `{code, headers {contentType, messageId}, message, data}`
  with `data` a JSON string: a callback's `{"response": …}` (a card callback's
  answer updates the clicker's card), an event's `{"status": "SUCCESS"|"LATER"}`,
  a ping's own `data` echoed back (its `opaque`); `disconnect` is not answered, the
  gateway closes the socket 10 s later;
- code 200 success, 404 topic not handled, 500 internal error (the client failed).
"""

from __future__ import annotations

import json
import random
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from yarl import URL

from bot.web.body import json_value

BOT_MESSAGES = "/v1.0/im/bot/messages/get"
CARD_CALLBACKS = "/v1.0/card/instances/callback"
EVENTS = "*"  # the only EVENT topic a client can subscribe to: every event ticked in the console
SYSTEM, EVENT, CALLBACK = "SYSTEM", "EVENT", "CALLBACK"
PING, DISCONNECT = "ping", "disconnect"
OPEN_PATH = "/v1.0/gateway/connections/open"
UA = "returnhub-stream-python/1"
JSON_TYPE = "application/json"
MAX_ANSWER = 1 << 20

# What a topic's handler gets: the frame's parsed `data`; what it returns goes in the ack.
Handler = Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]


class StreamError(Exception):
    """The gateway refused or garbled the open-connection call (never carries the secret)."""


@dataclass(frozen=True, slots=True)
class Ticket:
    endpoint: str
    ticket: str

    def url(self) -> URL:
        return URL(self.endpoint).update_query(ticket=self.ticket)


def subscriptions(topics: Iterable[str]) -> list[dict[str, str]]:
    """The `subscriptions` of the open-connection call for the handled topics."""
    return [{"type": EVENT if topic == EVENTS else CALLBACK, "topic": topic} for topic in topics]


async def open_connection(
    http: aiohttp.ClientSession,
    api_base: str,
    client_id: str,
    client_secret: str,
    topics: Iterable[str],
    *,
    within: float = 10.0,
) -> Ticket:
    """Register one connection: a fresh endpoint + single-use ticket."""
    body = {
        "clientId": client_id,
        "clientSecret": client_secret,
        "subscriptions": subscriptions(topics),
        "ua": UA,
    }
    url = api_base.rstrip("/") + OPEN_PATH
    async with http.post(
        url,
        json=body,
        headers={"Accept": JSON_TYPE},
        timeout=aiohttp.ClientTimeout(total=within),
    ) as resp:
        raw = await resp.content.read(MAX_ANSWER)
        status = resp.status
    try:
        answer = json.loads(raw)
    except ValueError:
        answer = None
    if status != 200 or not isinstance(answer, dict):
        detail = answer if isinstance(answer, dict) else {}
        raise StreamError(
            f"open connection refused: HTTP {status} {detail.get('code', '')}"
            f" {str(detail.get('message', ''))[:200]}".rstrip()
        )
    endpoint, ticket = answer.get("endpoint"), answer.get("ticket")
    if not (isinstance(endpoint, str) and endpoint and isinstance(ticket, str) and ticket):
        raise StreamError("open connection answered without endpoint and ticket")
    return Ticket(endpoint, ticket)


@dataclass(frozen=True, slots=True)
class Frame:
    type: str
    topic: str
    message_id: str
    data: str  # the JSON string as pushed

    @classmethod
    def parse(cls, raw: str) -> Frame:
        """A pushed frame; ValueError when it is not one."""
        frame = json_value(raw)
        # "header" is how the protocol page's own EVENT example spells it
        headers = frame.get("headers", frame.get("header")) if isinstance(frame, dict) else None
        if not isinstance(headers, dict):
            raise ValueError("a frame is an object with headers")
        kind, data = frame.get("type"), frame.get("data", "")
        if kind not in (SYSTEM, EVENT, CALLBACK) or not isinstance(data, str):
            raise ValueError(f"unknown frame type {kind!r} or non-string data")
        return cls(kind, str(headers.get("topic", "")), str(headers.get("messageId", "")), data)

    def payload(self) -> dict[str, Any]:
        """The parsed `data`; ValueError when it is not a JSON object."""
        value = json_value(self.data) if self.data else {}
        if not isinstance(value, dict):
            raise ValueError("frame data is not a JSON object")
        return value


def ack(message_id: str, data: str, *, code: int = 200, message: str = "OK") -> str:
    """The answer to one frame, as the gateway expects it on the socket."""
    headers = {"contentType": JSON_TYPE, "messageId": message_id}
    return json.dumps(
        {"code": code, "headers": headers, "message": message, "data": data}, ensure_ascii=False
    )


def success(frame: Frame, answer: dict[str, Any]) -> str:
    if frame.type == EVENT:
        return ack(frame.message_id, json.dumps({"status": "SUCCESS", "message": "success"}))
    return ack(frame.message_id, json.dumps({"response": answer}, ensure_ascii=False))


def failure(frame: Frame, code: int, message: str) -> str:
    """Not handled: 404 (no handler), 400 (bad data) or 500 (the handler failed; re-push)."""
    if frame.type == EVENT:
        data = json.dumps({"status": "LATER", "message": message})
    else:
        data = json.dumps({"response": None})
    return ack(frame.message_id, data, code=code, message=message)


@dataclass
class Backoff:
    """Capped exponential backoff with jitter between connection attempts.

    The n-th delay lies in [c/2, c] with c = min(cap, base * 2**n): it grows, never
    passes `cap`, and replicas that lost the gateway together do not reconnect in step.
    """

    base: float = 1.0
    cap: float = 60.0
    rand: Callable[[], float] = field(default=random.random, repr=False)
    attempt: int = 0

    def next(self) -> float:
        ceiling = min(self.cap, self.base * 2 ** min(self.attempt, 32))
        self.attempt += 1
        return ceiling / 2 + ceiling / 2 * self.rand()

    def reset(self) -> None:
        self.attempt = 0
