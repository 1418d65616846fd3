"""A fake DingTalk Stream gateway on loopback: open-connection call + WebSocket endpoint.

What the real one does (developerpedia `docs/learn/stream/protocol.md`), checked here:

- `POST /v1.0/gateway/connections/open` needs the app's clientId/clientSecret (else
  401) and a non-empty `subscriptions` list of `{type: EVENT|CALLBACK, topic}` (else
  400); it answers `{endpoint, ticket}`: the ticket is good for ONE connection within
  `ticket_ttl` seconds; a reused, unknown or expired ticket is refused (401) at the
  WebSocket handshake, and the reason recorded in `refusals`;
- `push` sends a frame `{specVersion, type, headers {topic, messageId, contentType,
  time}, data: "<json>"}` to the newest open connection (or the next one to open);
- every ack is checked for the protocol's shape (`code`, `headers.messageId`,
  `headers.contentType`, `message`, `data` a JSON string) and recorded in `acks`;
  a malformed one goes to `bad_acks`;
- a frame is done once acked with code 200 (an EVENT also needs status SUCCESS) or
  refused with a 4xx; otherwise it is re-pushed every `repush_after` seconds and at
  once to a new connection — as the real gateway does for events. (Real robot
  messages are fire-and-forget; the fake re-pushes them too, the harsher case.)
- `ping` sends SYSTEM ping and records the pong (`pongs`) when its data echoes the
  opaque; `disconnect` sends SYSTEM disconnect and closes the socket `silence`
  seconds later unless the client closed first (`closed_by_client`);
- `drop` cuts every connection; `push(..., drop_mid_frame=True)` writes half of the
  frame on the wire and then cuts it.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import time
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass, field
from typing import Any

from aiohttp import WSMsgType, web
from aiohttp.test_utils import TestServer

CLIENT_ID = "dingstreamappkey0001"
CLIENT_SECRET = "stream-app-secret-for-tests-0123456789"


@dataclass
class _Frame:
    message_id: str
    type: str
    text: str
    sent_at: float = 0.0


@dataclass
class _Conn:
    ws: web.WebSocketResponse
    request: web.Request


@dataclass
class FakeStreamGateway:
    client_id: str = CLIENT_ID
    client_secret: str = CLIENT_SECRET
    ticket_ttl: float = 90.0
    repush_after: float = 1.0
    silence: float = 10.0  # after `disconnect`, the gateway closes the socket
    url: str = ""
    opened: list[list[dict[str, str]]] = field(default_factory=list)  # subscriptions per call
    open_refusals: int = 0
    fail_open: int = 0  # the next N open-connection calls answer 503
    connections: int = 0
    refusals: list[str] = field(default_factory=list)
    acks: list[dict[str, Any]] = field(default_factory=list)
    bad_acks: list[str] = field(default_factory=list)
    pongs: list[str] = field(default_factory=list)
    deliveries: Counter[str] = field(default_factory=Counter)
    done: set[str] = field(default_factory=set)
    closed_by_client: list[bool] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._tickets: dict[str, float] = {}  # ticket -> expiry (loop time)
        self._used: set[str] = set()
        self._pending: dict[str, _Frame] = {}
        self._pings: dict[str, str] = {}  # messageId -> data
        self._conns: list[_Conn] = []
        self._changed = asyncio.Condition()

    def install(self, app: web.Application) -> None:
        """Add the gateway's routes to `app` (e.g. the fake DingTalk API's own app, since
        the open-connection call goes to the same api_base as the OpenAPI)."""
        app.router.add_post("/v1.0/gateway/connections/open", self._open)
        app.router.add_get("/connect", self._connect)

    def app(self) -> web.Application:
        app = web.Application()
        self.install(app)
        return app

    # --- the open-connection call and the handshake -------------------------------------

    async def _open(self, request: web.Request) -> web.Response:
        if self.fail_open > 0:
            self.fail_open -= 1
            return web.json_response({"code": "ServiceUnavailable"}, status=503)
        try:
            body = await request.json()
        except ValueError:
            return web.json_response({"code": "InvalidParameter"}, status=400)
        if not isinstance(body, dict):
            return web.json_response({"code": "InvalidParameter"}, status=400)
        if (
            body.get("clientId") != self.client_id
            or body.get("clientSecret") != self.client_secret
        ):
            self.open_refusals += 1
            return web.json_response(
                {"code": "InvalidAuthentication", "message": "clientId or clientSecret wrong"},
                status=401,
            )
        subs = body.get("subscriptions")
        if not isinstance(subs, list) or not subs or not all(_subscription(s) for s in subs):
            return web.json_response(
                {"code": "InvalidParameter", "message": "subscriptions"}, status=400
            )
        self.opened.append(subs)
        ticket = secrets.token_hex(16)
        self._tickets[ticket] = asyncio.get_running_loop().time() + self.ticket_ttl
        host = request.host
        return web.json_response({"endpoint": f"ws://{host}/connect", "ticket": ticket})

    def expire_tickets(self) -> None:
        self._tickets = dict.fromkeys(self._tickets, 0.0)

    async def _connect(self, request: web.Request) -> web.StreamResponse:
        ticket = request.query.get("ticket", "")
        expiry = self._tickets.pop(ticket, None)
        reason = (
            "reused ticket" if ticket in self._used
            else "unknown ticket" if expiry is None
            else "expired ticket" if asyncio.get_running_loop().time() > expiry
            else ""
        )  # fmt: skip
        self._used.add(ticket)
        if reason:
            self.refusals.append(reason)
            return web.json_response({"code": "InvalidTicket", "message": reason}, status=401)
        ws = web.WebSocketResponse(autoping=True)
        await ws.prepare(request)
        conn = _Conn(ws, request)
        self._conns.append(conn)
        self.connections += 1
        for frame in list(self._pending.values()):
            await self._send(conn, frame)
        await self._notify()
        try:
            async for msg in ws:
                if msg.type is WSMsgType.TEXT:
                    await self._on_ack(msg.data)
        finally:
            self._conns.remove(conn)
            await self._notify()
        return ws

    # --- pushing and acks ---------------------------------------------------------------

    async def push(
        self,
        topic: str,
        data: dict[str, Any] | str,
        *,
        type: str = "CALLBACK",
        message_id: str | None = None,
        drop_mid_frame: bool = False,
    ) -> str:
        """Push one frame (kept until acked); returns its messageId. A str `data` is sent as
        it is (the frame's JSON string), so a test can push garbage."""
        mid = message_id or f"{secrets.token_hex(4)}_{len(self.deliveries)}"
        text = data if isinstance(data, str) else json.dumps(data, ensure_ascii=False)
        frame = _Frame(mid, type, _frame_text(type, topic, mid, text))
        self._pending[mid] = frame
        conn = self._conns[-1] if self._conns else None
        if conn is not None and drop_mid_frame:
            self.deliveries[mid] += 1
            frame.sent_at = asyncio.get_running_loop().time()
            _write_half_and_cut(conn, frame.text)
        elif conn is not None:
            await self._send(conn, frame)
        return mid

    async def _send(self, conn: _Conn, frame: _Frame) -> None:
        frame.sent_at = asyncio.get_running_loop().time()
        self.deliveries[frame.message_id] += 1
        with suppress(ConnectionError, RuntimeError):
            await conn.ws.send_str(frame.text)

    async def _on_ack(self, raw: str) -> None:
        try:
            ack = json.loads(raw)
            mid = ack["headers"]["messageId"]
            assert isinstance(ack["code"], int) and isinstance(ack["message"], str)
            assert ack["headers"]["contentType"] == "application/json"
            data = json.loads(ack["data"])
        except (ValueError, KeyError, TypeError, AssertionError):
            self.bad_acks.append(raw)
            return
        self.acks.append(ack)
        if mid in self._pings and self._pings.pop(mid) == ack["data"]:
            self.pongs.append(mid)
        frame = self._pending.get(mid)
        if frame is not None:
            ok = ack["code"] == 200 and (frame.type != "EVENT" or data.get("status") == "SUCCESS")
            if ok or 400 <= ack["code"] < 500:
                del self._pending[mid]
                self.done.add(mid)
        await self._notify()

    async def repush_due(self) -> None:
        """Re-send every frame not acked within `repush_after` seconds."""
        now = asyncio.get_running_loop().time()
        conn = self._conns[-1] if self._conns else None
        for frame in list(self._pending.values()):
            if conn is not None and now - frame.sent_at >= self.repush_after:
                await self._send(conn, frame)

    def answer(self, message_id: str) -> dict[str, Any]:
        """The last ack for `message_id`, its `data` parsed."""
        ack = next(a for a in reversed(self.acks) if a["headers"]["messageId"] == message_id)
        return {**ack, "data": json.loads(ack["data"])}

    # --- system frames and faults -------------------------------------------------------

    async def ping(self) -> str:
        mid = f"ping_{secrets.token_hex(4)}"
        data = json.dumps({"opaque": secrets.token_hex(8)})
        self._pings[mid] = data
        await self._conns[-1].ws.send_str(_frame_text("SYSTEM", "ping", mid, data))
        return mid

    async def disconnect(self, reason: str = "connection is expired") -> None:
        conn = self._conns[-1]
        data = json.dumps({"reason": reason})
        await conn.ws.send_str(_frame_text("SYSTEM", "disconnect", "", data))
        with suppress(TimeoutError):
            await asyncio.wait_for(self.wait(lambda: conn not in self._conns), self.silence)
        self.closed_by_client.append(conn not in self._conns)
        await conn.ws.close()

    def drop(self) -> None:
        """Cut every connection at the TCP level, without a close frame."""
        for conn in self._conns:
            if conn.request.transport is not None:
                conn.request.transport.abort()

    @property
    def open_connections(self) -> int:
        return len(self._conns)

    @property
    def pending(self) -> set[str]:
        return set(self._pending)

    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    async def wait(self, predicate: Any, within: float = 10.0) -> None:
        """Until `predicate()` holds (re-checked on every ack and connection change)."""

        async def until() -> None:
            async with self._changed:
                while not predicate():
                    with suppress(TimeoutError):
                        await asyncio.wait_for(self._changed.wait(), 0.05)

        await asyncio.wait_for(until(), within)


def _subscription(sub: Any) -> bool:
    if not isinstance(sub, dict) or not isinstance(sub.get("topic"), str):
        return False
    if sub.get("type") == "EVENT":
        return sub["topic"] == "*"
    return sub.get("type") == "CALLBACK" and sub["topic"].startswith("/v1.0/")


def _frame_text(type: str, topic: str, message_id: str, data: str) -> str:
    headers = {
        "topic": topic,
        "messageId": message_id,
        "contentType": "application/json",
        "time": str(int(time.time() * 1000)),
    }
    if type == "SYSTEM" and not message_id:
        del headers["messageId"]  # a disconnect carries none
    return json.dumps({"specVersion": "1.0", "type": type, "headers": headers, "data": data})


def _write_half_and_cut(conn: _Conn, text: str) -> None:
    """A server text frame's header and half its payload on the raw transport, then EOF."""
    payload = text.encode()
    n = len(payload)
    if n < 126:
        header = bytes([0x81, n])
    elif n < 1 << 16:
        header = bytes([0x81, 126]) + n.to_bytes(2, "big")
    else:
        header = bytes([0x81, 127]) + n.to_bytes(8, "big")
    transport = conn.request.transport
    assert transport is not None
    transport.write(header + payload[: n // 2])
    transport.close()


@asynccontextmanager
async def repushing(fake: FakeStreamGateway) -> AsyncIterator[FakeStreamGateway]:
    """Re-push unacked frames in the background while inside; close every socket after."""

    async def repusher() -> None:
        while True:
            await asyncio.sleep(fake.repush_after / 4)
            await fake.repush_due()

    task = asyncio.create_task(repusher())
    try:
        yield fake
    finally:
        task.cancel()
        with suppress(asyncio.CancelledError):
            await task
        for conn in list(fake._conns):
            await conn.ws.close()


@asynccontextmanager
async def running(fake: FakeStreamGateway) -> AsyncIterator[FakeStreamGateway]:
    """Serve `fake` on 127.0.0.1 (random port), re-pushing unacked frames in the background;
    `fake.url` is the api_base to configure."""
    server = TestServer(fake.app(), host="127.0.0.1")
    await server.start_server()
    fake.url = str(server.make_url("")).rstrip("/")
    try:
        async with repushing(fake):
            yield fake
    finally:
        await server.close()
