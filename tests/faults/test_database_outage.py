"""PostgreSQL taken away and given back under a running server (issue 14, fault 3).

The server reaches the database through a TCP proxy the test controls
(tests/fakes/tcp_proxy.py). While it is cut (every connection aborted, new ones
refused) `/healthz` answers 503, a webhook gets 503 with Retry-After, and a WeCom
callback and a 抖店 push get 503 (so WeCom and 抖店 send them again), storing
nothing. Once it is back the same process serves again, with no restart (the
pools ping and replace dead connections), and each sender's retry takes effect
exactly once.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import AsyncIterator, Callable
from datetime import datetime
from pathlib import Path

import pytest
from sqlalchemy import func, select
from sqlalchemy.engine import make_url

from bot.app import create_app
from storage.db import Database
from storage.models import Case
from tests.conftest import ONLY_PG
from tests.fakes.douyin import FakeDouyin, douyin_settings, running_douyin
from tests.fakes.tcp_proxy import TcpProxy, tcp_proxy
from tests.fakes.wecom import FakeWecom, running
from tests.fakes.wecom_callbacks import CallbackSigner, settle, with_wecom
from tests.support import (
    GENERIC_SECRET,
    Client,
    FakeClock,
    MakeClient,
    post_generic,
    return_body,
    sign_generic,
    table_counts,
)

pytestmark = ONLY_PG
AFTERSALE = "7200000000000000001"


@pytest.fixture
async def proxy(db: Database) -> AsyncIterator[TcpProxy]:
    url = make_url(db.url)
    async with tcp_proxy(url.host or "127.0.0.1", url.port or 5432) as running:
        yield running


@pytest.fixture
async def wecom() -> AsyncIterator[FakeWecom]:
    async with running(FakeWecom()) as server:
        yield server


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def douyin(clock: FakeClock) -> AsyncIterator[FakeDouyin]:
    async with running_douyin(clock) as server:
        yield server


@pytest.fixture
async def client(
    db: Database,
    proxy: TcpProxy,
    clock: FakeClock,
    wecom: FakeWecom,
    douyin: FakeDouyin,
    tmp_path: Path,
    aiohttp_client: MakeClient,
) -> Client:
    """The server on the proxy's port, with a WeCom app and a 抖店 shop on their fakes."""
    through = make_url(db.url).set(port=proxy.port).render_as_string(hide_password=False)
    settings = with_wecom(douyin_settings(tmp_path, through, douyin.url), wecom.url)
    bounds = dataclasses.replace(
        settings.database, timeout_seconds=1.0, statement_timeout_seconds=2.0
    )
    settings = dataclasses.replace(settings, database=bounds)
    return await aiohttp_client(create_app(settings, clock=clock, background=False))


def signed(raw: bytes, clock: Callable[[], datetime]) -> dict[str, str]:
    return sign_generic(GENERIC_SECRET, raw, int(clock().timestamp()))


async def cases_of(db: Database, external_id: str) -> int:
    async with db.read() as session:
        stmt = select(func.count()).select_from(Case).where(Case.external_id == external_id)
        return int(await session.scalar(stmt) or 0)


async def test_a_lost_database_is_503_meanwhile_and_served_again_without_a_restart(
    client: Client, proxy: TcpProxy, db: Database, clock: FakeClock, wecom: FakeWecom,
    douyin: FakeDouyin,
) -> None:  # fmt: skip
    signer = CallbackSigner(lambda: int(clock().timestamp()))
    query, sealed = signer.seal(signer.text("xiaomei", "/帮助", msg_id=7001))
    assert (await client.get("/healthz")).status == 200
    status, _ = await post_generic(
        client, return_body(event_id="before", external_id="AS-1"), clock
    )
    assert status == 202  # the pools now hold live connections, all through the proxy

    stored = await table_counts(db)  # through its own connection, not the proxy
    await proxy.cut()
    for _ in range(3):  # each answered within the bounds (1 s), not a hang
        health = await client.get("/healthz")
        assert health.status == 503
        assert (await health.json())["db"] == "unreachable"
    body = return_body(event_id="during", external_id="AS-2", order_id="SO-2")
    raw = json.dumps(body).encode()
    resp = await client.post("/webhooks/generic", data=raw, headers=signed(raw, clock))
    assert resp.status == 503 and resp.headers["Retry-After"].isdigit()
    assert "retry later" in (await resp.json())["error"]
    chat = await client.post("/callbacks/wecom", params=query, data=sealed)
    assert chat.status == 503  # not 200: WeCom sends the message again
    douyin.add(AFTERSALE, amount=2990, kind=1, update_time=1_800_000_000)
    push = [douyin.message(200, AFTERSALE, "m-200")]
    assert await douyin.push(client, push) == (503, {"code": 1, "msg": "fail"})  # re-pushed
    assert await table_counts(db) == stored  # nothing half-written

    reconnects = proxy.accepted
    await proxy.restore()
    health = await client.get("/healthz")
    assert health.status == 200
    for _ in range(2):  # the sender's retry, and a second one it sends to be sure
        status, answer = await post_generic(client, body, clock)
        assert status == 202, answer
    assert answer["duplicate"] is True
    assert proxy.accepted > reconnects  # dead pooled connections were replaced, in-process
    for _ in range(2):  # WeCom's re-send, and one more: a single reply
        chat = await client.post("/callbacks/wecom", params=query, data=sealed)
        assert chat.status == 200
    for _ in range(2):  # 抖店's re-push, and one more
        assert await douyin.push(client, push) == (200, {"code": 0, "msg": "success"})
    await settle(client.app)
    assert len(wecom.texts_to("xiaomei")) == 1
    assert await cases_of(db, AFTERSALE) == 1
    assert await cases_of(db, "AS-2") == 1 and await cases_of(db, "AS-1") == 1
