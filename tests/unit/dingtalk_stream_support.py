"""Shared by the DingTalk Stream tests: a handler that stores its key and an effect, the
fake gateway and a client built against it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import pytest
from sqlalchemy import func, select

from bot.keys import key
from bot.platforms.dingtalk_stream import DingtalkStream
from bot.platforms.dingtalk_stream_protocol import Backoff
from storage import outbox
from storage.db import Database
from storage.models import InboxKey, OutboxMessage
from tests.fakes.dingtalk_stream import CLIENT_ID, CLIENT_SECRET, FakeStreamGateway, running

NOW = datetime(2026, 12, 1, 3, 0, tzinfo=UTC)


class Effects:
    """A handler as the real ones are: key and effect in one transaction, then return."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self.calls = 0
        self.fail_next = 0
        self.gate: asyncio.Event | None = None
        self.after_store: Callable[[], Awaitable[None]] | None = None

    async def __call__(self, data: dict[str, Any]) -> dict[str, Any]:
        self.calls += 1
        if self.fail_next:
            self.fail_next -= 1
            raise RuntimeError("database unavailable")
        k = key("dingtalk", data["msgId"])
        async with self.db.transaction() as session:
            if await session.get(InboxKey, k) is None:
                session.add(
                    InboxKey(key=k, source="dingtalk", received_at=NOW.replace(tzinfo=None))
                )
                outbox.enqueue(
                    session, kind="text.send", destination="dingtalk:u1",
                    payload={"msg": data["msgId"]}, now=NOW,
                )  # fmt: skip
        if self.after_store is not None:
            await self.after_store()
        if self.gate is not None:
            await self.gate.wait()
        return {"handled": data["msgId"]}

    async def stored(self) -> int:
        async with self.db.read() as session:
            return int(await session.scalar(select(func.count()).select_from(OutboxMessage)) or 0)

    async def has_key(self, msg_id: str) -> bool:
        async with self.db.read() as session:
            return await session.get(InboxKey, key("dingtalk", msg_id)) is not None


@pytest.fixture
async def gateway() -> AsyncIterator[FakeStreamGateway]:
    async with running(FakeStreamGateway(repush_after=0.3, silence=2.0)) as gw:
        yield gw


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10, connect=3)) as s:
        yield s


def stream(
    http: aiohttp.ClientSession,
    gw: FakeStreamGateway,
    db: Database,
    handlers: dict[str, Any],
    holder: str = "replica-a",
    **kw: Any,
) -> DingtalkStream:
    kw.setdefault("backoff", Backoff(base=0.05, cap=0.2))
    return DingtalkStream(
        http, gw.url, CLIENT_ID, CLIENT_SECRET, handlers, db, holder,
        lease_ttl=kw.pop("lease_ttl", timedelta(seconds=3)), heartbeat=5, drain=2, **kw,
    )  # fmt: skip


def robot(msg_id: str) -> dict[str, Any]:
    return {"msgId": msg_id, "msgtype": "text", "text": {"content": "/查单 RC-1"}}


@asynccontextmanager
async def connected(client: DingtalkStream) -> AsyncIterator[DingtalkStream]:
    """`client` started and connected; stopped on the way out."""
    client.start()
    try:
        await asyncio.wait_for(client.connected.wait(), 10)
        yield client
    finally:
        await client.stop()
