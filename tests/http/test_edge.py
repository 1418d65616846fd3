"""The HTTP edge (bot/web/edge.py) on a real socket, the way `returnhub serve` runs it.

Raw TCP clients do what test clients cannot: stop mid-body, trickle a body, send
bytes aiohttp's parser refuses. Each test asserts the outcome (the status, the
log, the counter, the rows); `asyncio.wait_for` with a generous limit only turns
a hang into a failure.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from aiohttp import web

from bot.app import create_app
from bot.appkeys import CTX, METRICS
from bot.settings import Settings
from bot.web.edge import server_kwargs
from storage.db import Database
from tests.conftest import ONLY_PG, PG_URL
from tests.fakes.wecom import FakeWecom, running
from tests.fakes.wecom_callbacks import wecom_app
from tests.support import (
    GENERIC_SECRET,
    Client,
    FakeClock,
    MakeClient,
    make_settings,
    return_body,
    sign_generic,
    table_counts,
)

TOKEN = "edge-test-token-0123456789"
HANG = 30.0  # seconds before a test calls it a hang; every bound under test is far below


def tuned(settings: Settings, **database: float) -> Settings:
    server = dataclasses.replace(settings.server, body_timeout_seconds=0.3)
    return dataclasses.replace(
        settings,
        server=server,
        database=dataclasses.replace(settings.database, **database),
    )


@pytest.fixture
def settings(tmp_path: Path, db: Database) -> Settings:
    return tuned(make_settings(tmp_path, db.url, api_token=TOKEN))


@asynccontextmanager
async def serving(app: web.Application) -> AsyncIterator[int]:
    """`app` on a loopback port, run as `returnhub serve` runs it (no handler cancellation)."""
    runner = web.AppRunner(app, handler_cancellation=False, **server_kwargs(app))
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield runner.addresses[0][1]
    finally:
        await runner.cleanup()


async def exchange(port: int, raw: bytes, *, hang_up: bool = False) -> bytes:
    """Send `raw`; read the whole answer until the server closes (or hang up at once)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(raw)
    await writer.drain()
    try:
        if hang_up:
            return b""
        return await asyncio.wait_for(reader.read(), HANG)
    finally:
        writer.close()


def counted(app: web.Application, route: str, status: int) -> float:
    labels = {"route": route, "status": str(status)}
    total = 0.0
    for method in ("POST", "GET", "other"):
        value = app[METRICS].registry.get_sample_value(
            "returnhub_http_requests_total", {"method": method, **labels}
        )
        total += value or 0.0
    return total


def post_head(length: int, *extra: str) -> bytes:
    lines = [
        "POST /webhooks/generic HTTP/1.1",
        "Host: 127.0.0.1",
        "Content-Type: application/json",
        f"Content-Length: {length}",
        *extra,
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def tracebacks(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]


# --- I: control characters in paths and queries ------------------------------------------


@pytest.mark.parametrize(
    "target",
    [
        "/api/cases/%00",
        "/api/cases/RC-1%00",
        "/api/cases?status=%00",
        "/api/cases?channel=generic%00",
        "/api/cases?%00=1",
        "/api/cases?cursor=%00",
        "/console/api/messages?user=%00",
        "/console/api/messages?user=%E5%B0%8F%E7%BE%8E%00&after=1",
        "/console/api/members?x=%01",
        "/healthz?x=%00",
    ],
)
async def test_control_characters_in_parameters_are_400_before_the_database(
    settings: Settings, aiohttp_client: MakeClient, target: str
) -> None:
    client: Client = await aiohttp_client(create_app(settings, background=False))
    before = await table_counts(client.app[CTX].db)
    resp = await client.get(target, headers={"Authorization": f"Bearer {TOKEN}"})
    assert resp.status == 400, await resp.text()
    assert "control character" in (await resp.json())["error"]
    assert await table_counts(client.app[CTX].db) == before


async def test_a_webhook_with_a_nul_in_its_query_stores_nothing(
    settings: Settings, aiohttp_client: MakeClient
) -> None:
    client: Client = await aiohttp_client(create_app(settings, background=False))
    before = await table_counts(client.app[CTX].db)
    resp = await client.post("/webhooks/generic?shop=%00", data=b"{}")
    assert resp.status == 400
    assert await table_counts(client.app[CTX].db) == before


# --- J: client faults are client errors ---------------------------------------------------


async def test_a_client_that_hangs_up_mid_body_is_no_500(
    settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    app = create_app(settings, background=False)
    async with serving(app) as port:
        before = await table_counts(app[CTX].db)
        caplog.clear()
        with caplog.at_level(logging.DEBUG):
            await exchange(port, post_head(500) + b'{"event_id": "half', hang_up=True)
            for _ in range(200):  # the server notices the hang-up on its own time
                if counted(app, "/webhooks/generic", 499):
                    break
                await asyncio.sleep(0.02)
        assert counted(app, "/webhooks/generic", 499) == 1
        assert counted(app, "/webhooks/generic", 500) == 0
        assert tracebacks(caplog) == []
        assert await table_counts(app[CTX].db) == before


async def test_a_body_that_does_not_decode_is_400_and_no_traceback(
    settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    app = create_app(settings, background=False)
    async with serving(app) as port:
        with caplog.at_level(logging.DEBUG):
            answer = await exchange(port, post_head(10, "Content-Encoding: gzip") + b"0123456789")
        assert answer.startswith(b"HTTP/1.1 400 ")
        assert b"bad encoding" in answer
        assert counted(app, "/webhooks/generic", 400) == 1
        assert counted(app, "/webhooks/generic", 500) == 0
        assert tracebacks(caplog) == []


async def test_a_route_that_answers_a_body_fault_itself_leaves_no_traceback(
    db: Database, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """WeCom's route answers an undecodable body with its own 400; aiohttp must not then
    trip over the rest of that body and log it as an unhandled exception."""
    async with running(FakeWecom()) as fake:
        app = wecom_app(db, tmp_path, FakeClock(), fake.url)
        async with serving(app) as port:
            head = post_head(10, "Content-Encoding: gzip").replace(
                b"/webhooks/generic", b"/callbacks/wecom"
            )
            with caplog.at_level(logging.DEBUG):
                answer = await exchange(port, head + b"0123456789")
    assert answer.startswith(b"HTTP/1.1 400 ")
    assert tracebacks(caplog) == []


@pytest.mark.parametrize(
    "raw",
    [
        b"POST /webhooks/generic HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        b"GET /healthz HTTP/1.1\r\nHost: a\r\nBad Header\r\n\r\n",
        b"GET /healthz HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
    ],
)
async def test_requests_the_parser_refuses_are_counted_and_logged_as_client_errors(
    settings: Settings, caplog: pytest.LogCaptureFixture, raw: bytes
) -> None:
    app = create_app(settings, background=False)
    async with serving(app) as port:
        with caplog.at_level(logging.DEBUG):
            answer = await exchange(port, raw)
        assert answer.split(b" ", 2)[1] == b"400"
        assert counted(app, "unparsed", 400) == 1
        assert tracebacks(caplog) == []
        refused = [r for r in caplog.records if "refused (400)" in r.getMessage()]
        assert [r.levelname for r in refused] == ["WARNING"]


# --- K: bounded bodies and a bounded database ---------------------------------------------


async def test_a_slow_body_gets_408_and_the_connection_is_closed(settings: Settings) -> None:
    app = create_app(settings, background=False)
    async with serving(app) as port:
        before = await table_counts(app[CTX].db)
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(post_head(100) + b'{"event_id"')  # and then nothing more
        await writer.drain()
        answer = await asyncio.wait_for(reader.read(), HANG)  # read() ends: server closed
        writer.close()
        assert answer.startswith(b"HTTP/1.1 408 ")
        assert counted(app, "/webhooks/generic", 408) == 1
        assert await table_counts(app[CTX].db) == before
        # The slot is free: the next request on a new connection is served.
        health = await exchange(
            port, b"GET /healthz HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"
        )
        assert health.startswith(b"HTTP/1.1 200 ")


async def test_the_sqlite_writer_lock_is_waited_for_a_bounded_time(
    tmp_path: Path, aiohttp_client: MakeClient
) -> None:
    """A write that cannot get the SQLite writer within the statement bound is a 503."""
    url = f"sqlite+aiosqlite:///{tmp_path}/busy.db"
    settings = tuned(make_settings(tmp_path, url, demo=True), statement_timeout_seconds=0.2)
    client: Client = await aiohttp_client(create_app(settings, background=False))
    db = client.app[CTX].db
    body = {"user": "小美", "text": "/帮助", "uuid": "5b0c7e4e-8f1d-4c1a-9d7e-2f3a4b5c6d7e"}
    async with db.transaction():  # another writer holds the lock meanwhile
        resp = await asyncio.wait_for(client.post("/console/api/send", json=body), HANG)
    assert resp.status == 503 and resp.headers["Retry-After"]
    assert "retry later" in (await resp.json())["error"]


class HoldingProxy:
    """A loopback TCP proxy to PostgreSQL that can start holding every packet: a network
    partition as the bot sees it (connections stay open, nothing answers)."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.flowing = asyncio.Event()
        self.flowing.set()
        self.writers: list[asyncio.StreamWriter] = []
        self.server: asyncio.Server | None = None

    async def start(self) -> int:
        self.server = await asyncio.start_server(self._client, "127.0.0.1", 0)
        port: int = self.server.sockets[0].getsockname()[1]
        return port

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.writers.append(writer)
        if not self.flowing.is_set():  # accepts, never speaks
            await reader.read()
            return
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        self.writers.append(up_writer)
        await asyncio.gather(self._pipe(reader, up_writer), self._pipe(up_reader, writer))

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while data := await reader.read(65536):
            await self.flowing.wait()
            writer.write(data)
        writer.close()

    async def stop(self) -> None:
        for writer in self.writers:
            writer.close()
        if self.server is not None:
            self.server.close()


def signed_webhook() -> bytes:
    raw = json.dumps(return_body(), ensure_ascii=False).encode()
    headers = sign_generic(GENERIC_SECRET, raw, int(time.time()))
    extra = [f"{k}: {v}" for k, v in headers.items() if k != "Content-Type"]
    return post_head(len(raw), "Connection: close", *extra) + raw


@ONLY_PG
async def test_a_database_that_stops_answering_gives_503_within_the_bound(
    tmp_path: Path, db: Database
) -> None:
    from sqlalchemy.engine import make_url

    real = make_url(PG_URL)
    proxy = HoldingProxy(real.port or 5432)
    url = real.set(host="127.0.0.1", port=await proxy.start())
    base = make_settings(tmp_path, url.render_as_string(hide_password=False), api_token=TOKEN)
    settings = tuned(base, timeout_seconds=0.5, statement_timeout_seconds=0.5)
    app = create_app(settings, background=False)
    try:
        async with serving(app) as port:
            proxy.flowing.clear()  # the partition starts: pooled connections go silent too
            webhook = await asyncio.wait_for(exchange(port, signed_webhook()), HANG)
            health = await asyncio.wait_for(
                exchange(port, b"GET /healthz HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"),
                HANG,
            )
            api = await asyncio.wait_for(
                exchange(
                    port,
                    b"GET /api/cases HTTP/1.1\r\nHost: a\r\nConnection: close\r\n"
                    + f"Authorization: Bearer {TOKEN}\r\n\r\n".encode(),
                ),
                HANG,
            )
            proxy.flowing.set()  # let the shutdown close its connections
        assert webhook.startswith(b"HTTP/1.1 503 ")
        assert health.startswith(b"HTTP/1.1 503 ")
        assert api.startswith(b"HTTP/1.1 503 ") and b"Retry-After: 5" in api
    finally:
        await proxy.stop()
