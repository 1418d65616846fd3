"""Bodies too big and clients too slow, on every inbound endpoint.

An oversized body is a 413 that stores nothing, declared (Content-Length) or not
(chunked: cut off as soon as the bound is passed). A slow client is bounded on a
real socket, the way `returnhub serve` runs (bot/web/edge.py `server_kwargs`):
a request head trickled a byte at a time is closed after `idle_timeout_seconds`,
a body trickled the same way gets 408 after `body_timeout_seconds`. The bounds are
set to a second so each test stays short; `wait_for(HANG)` turns a connection
that is never closed into a failure.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bot.app import create_app
from bot.appkeys import CTX
from storage.db import Database
from tests.http.test_edge import serving
from tests.security.conftest import every_endpoint_settings
from tests.security.endpoints import endpoints
from tests.support import Client, FakeClock, table_counts

HANG = 15.0
BIG = 2 << 20  # over every route's bound and the app's client_max_size
CONSOLE = ["/console/api/send", "/console/api/click", "/console/login", "/dashboard/login"]


async def chunks(total: int) -> AsyncIterator[bytes]:
    for _ in range(total // 65536):
        yield b"x" * 65536


@pytest.mark.usefixtures("errors")
async def test_an_oversized_body_is_413_and_stores_nothing(
    everything: Client, clock: FakeClock
) -> None:
    before = await table_counts(everything.app[CTX].db)
    for endpoint in endpoints(clock):
        req = endpoint.good()
        if req.method != "POST":
            continue
        for body in (req.body + b" " * BIG, chunks(BIG)):  # declared, then chunked
            resp = await everything.post(
                req.path, data=body, params=req.params, headers=req.headers
            )
            assert resp.status == 413, (endpoint.name, resp.status)
        assert await table_counts(everything.app[CTX].db) == before, endpoint.name
    for path in CONSOLE:
        form = "application/json" if "api" in path else "application/x-www-form-urlencoded"
        resp = await everything.post(path, data=b"x" * BIG, headers={"Content-Type": form})
        assert resp.status in (401, 413), path  # 401: no member signed in, nothing read


# Sockets and timers, not storage: SQLite alone.
SQLITE = pytest.mark.parametrize("db", ["sqlite"], indirect=True)


@pytest.fixture
async def served(db: Database, tmp_path: Path) -> AsyncIterator[int]:
    settings = every_endpoint_settings(tmp_path, db.url)
    server = dataclasses.replace(
        settings.server, idle_timeout_seconds=1.0, body_timeout_seconds=1.0
    )
    app = create_app(dataclasses.replace(settings, server=server), background=False)
    async with serving(app) as port:
        yield port


async def trickle(port: int, head: bytes, drip: bytes) -> bytes:
    """Send `head`, then `drip` a byte every 0.3 s until the server answers or closes;
    what it sent back."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(head)

    async def drip_feed() -> None:
        for byte in drip:
            writer.write(bytes([byte]))
            await writer.drain()
            await asyncio.sleep(0.3)

    feeding = asyncio.create_task(drip_feed())
    try:
        return await asyncio.wait_for(reader.read(), HANG)  # ends when the server closes
    finally:
        feeding.cancel()
        writer.close()


@SQLITE
@pytest.mark.parametrize("path", ["/webhooks/generic", "/callbacks/wecom", "/api/cases"])
async def test_a_request_head_sent_a_byte_at_a_time_is_closed(served: int, path: str) -> None:
    head = f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n".encode()
    answer = await trickle(served, head, b"X-Slow: " + b"a" * 200)
    assert answer == b""  # closed without an answer: there was never a request


@SQLITE
@pytest.mark.parametrize("path", ["/webhooks/generic", "/webhooks/shopify", "/callbacks/wecom"])
async def test_a_body_sent_a_byte_at_a_time_gets_408(served: int, path: str) -> None:
    head = (f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            "Content-Length: 200\r\n\r\n").encode()  # fmt: skip
    answer = await trickle(served, head, b"{" + b" " * 198 + b"}")
    assert answer.startswith(b"HTTP/1.1 408 ")
