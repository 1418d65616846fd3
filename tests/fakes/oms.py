"""A fake OMS: the receiver of the generic channel's case-event callbacks, on loopback.

It checks our signature and timestamp the way a real integrator would, written
out from CONTRACT.md (not imported from bot/), and answers 401 when they are
wrong. It is idempotent on `event_id` like a careful receiver: `deliveries` counts
every accepted POST, `events` keeps one entry per event id. `down()` makes it
answer 503 (or drop the connection, or any status) until `up()`.

    async with running_oms(clock) as oms:
        settings = make_settings(tmp_path, url, callback_url=oms.url)
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, NoReturn

from aiohttp import web
from aiohttp.test_utils import TestServer

from tests.support import GENERIC_SECRET

PATH = "/returnhub/events"
CLOSE = "close"  # down() mode: drop the connection without an answer
LOSE_ACK = "lose-ack"  # down() mode: accept the event, then drop the answer (so we resend)


@dataclass
class Delivery:
    """One accepted POST: the parsed body and the headers it came with."""

    body: dict[str, Any]
    headers: dict[str, str]
    at: datetime


@dataclass
class FakeOms:
    clock: Callable[[], datetime]
    secret: str = GENERIC_SECRET
    window: int = 300
    url: str = ""
    failure: int | str | None = None  # None: up; an HTTP status; or CLOSE
    deliveries: list[Delivery] = field(default_factory=list)
    events: dict[str, dict[str, Any]] = field(default_factory=dict)
    refused: list[str] = field(default_factory=list)  # 401 reasons
    failed: int = 0  # attempts answered while down

    def down(self, how: int | str = 503) -> None:
        self.failure = how

    def up(self) -> None:
        self.failure = None

    def of_case(self, case_id: str) -> list[dict[str, Any]]:
        """Unique events for a case, in the order they first arrived."""
        return [e for e in self.events.values() if e.get("case_id") == case_id]

    def names(self, case_id: str) -> list[str]:
        return [e["event"] for e in self.of_case(case_id)]

    def _check(self, timestamp: str, signature: str, raw: bytes) -> str | None:
        if not timestamp or not signature:
            return "missing signature headers"
        if not timestamp.isdigit():
            return "timestamp is not unix seconds"
        if abs(self.clock().timestamp() - int(timestamp)) > self.window:
            return "timestamp outside the replay window"
        expected = hmac.new(
            self.secret.encode(), timestamp.encode() + b"." + raw, hashlib.sha256
        ).hexdigest()
        if not hmac.compare_digest(signature.encode(), expected.encode()):
            return "bad signature"
        return None

    async def handle(self, request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        if self.failure is not None and self.failure != LOSE_ACK:
            self.failed += 1
            if self.failure == CLOSE:
                self._drop(request)
            return web.json_response({"error": "down"}, status=int(self.failure))
        problem = self._check(
            request.headers.get("X-Returnhub-Timestamp", ""),
            request.headers.get("X-Returnhub-Signature", ""),
            raw,
        )
        if problem is not None:
            self.refused.append(problem)
            return web.json_response({"error": problem}, status=401)
        body = json.loads(raw)
        self.deliveries.append(Delivery(body, dict(request.headers), self.clock()))
        duplicate = body["event_id"] in self.events
        self.events.setdefault(body["event_id"], body)
        if self.failure == LOSE_ACK:
            self.failed += 1
            self._drop(request)
        return web.json_response({"ok": True, "duplicate": duplicate})

    @staticmethod
    def _drop(request: web.Request) -> NoReturn:
        assert request.transport is not None
        request.transport.close()
        raise ConnectionResetError("fake OMS dropped the connection")


@asynccontextmanager
async def running_oms(
    clock: Callable[[], datetime], secret: str = GENERIC_SECRET
) -> AsyncIterator[FakeOms]:
    """Start the fake on a free loopback port; `oms.url` is the callback_url to configure."""
    oms = FakeOms(clock=clock, secret=secret)
    app = web.Application()
    app.router.add_post(PATH, oms.handle)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    oms.url = str(server.make_url(PATH))
    try:
        yield oms
    finally:
        await server.close()
