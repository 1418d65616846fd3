"""The SLA clock in real `returnhub serve` processes, against the fake WeCom on loopback.

A 1-minute natural-time review reminds the approver in WeCom at 50% and 100% and
escalates to the ops director at 150%, in that order; on PostgreSQL two servers on
one database fire every timer exactly once (each case's reminder reaches WeCom once,
whichever replica claimed it). Bounds are generous timeouts only: nothing asserts on
how fast.
"""

from __future__ import annotations

import json
import signal
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path

import aiohttp
import pytest
from sqlalchemy import func, select

from storage.db import Database
from storage.models import Timer
from tests.conftest import pg_or_skip
from tests.fakes.wecom import AES_KEY, AGENT_ID, CORP_ID, SECRET, TOKEN, FakeWecom, running
from tests.support import GENERIC_SECRET, make_settings, return_body, sign_generic
from tests.test_serve import free_port
from tests.test_workers import Server, empty_schema, until

REVIEW = """
[policies.first_review]
minutes = {minutes}
remind_at = {remind_at}
escalate_at = 1.5
escalate_to = "{escalate_to}"
[policies.director_review]
hours = 8
"""
LEAD, OTHER_LEAD, DIRECTOR = "wangzuzhang", "liuzuzhang", "lizongjian"


def configure(
    tmp_path: Path, url: str, monkeypatch: pytest.MonkeyPatch, api: str, sla: str
) -> str:
    """returnhub.toml (console off, outbox ticking fast), sla.toml, [wecom] from the env."""
    make_settings(tmp_path, url, console=False, outbox={"tick_seconds": 0.5})
    (tmp_path / "sla.toml").write_text(sla, encoding="utf-8")
    for key, value in {
        "CORP_ID": CORP_ID, "AGENT_ID": str(AGENT_ID), "SECRET": SECRET, "TOKEN": TOKEN,
        "ENCODING_AES_KEY": AES_KEY, "API_BASE": api,
    }.items():  # fmt: skip
        monkeypatch.setenv(f"RETURNHUB__WECOM__{key}", value)
    return str(tmp_path / "returnhub.toml")


async def post_case(port: int, n: int) -> str:
    body = return_body(
        event_id=f"evt-{n}", external_id=f"AS-{n}", order_id=f"SO-{n}", amount="132.00",
        buyer={"ref": f"buyer-{n}", "nick": "喵星人"},
        items=[{"sku": "FEEDER-2", "name": "自动喂食器", "qty": 1, "unit_price": "132.00"}],
    )  # fmt: skip
    raw = json.dumps(body, ensure_ascii=False).encode()
    headers = sign_generic(GENERIC_SECRET, raw, int(datetime.now(UTC).timestamp()))
    async with (
        aiohttp.ClientSession() as http,
        http.post(f"http://127.0.0.1:{port}/webhooks/generic", data=raw, headers=headers) as resp,
    ):
        answer = await resp.json()
        assert resp.status == 202, answer
        return str(answer["case_id"])


async def healthy(port: int) -> bool:
    try:
        async with (
            aiohttp.ClientSession() as http,
            http.get(f"http://127.0.0.1:{port}/healthz") as resp,
        ):
            return resp.status == 200
    except aiohttp.ClientError:
        return False


@asynccontextmanager
async def serving(tmp_path: Path, config: str, port: int) -> AsyncIterator[Server]:
    server = await Server.start(tmp_path, "serve", "--config", config, "--port", str(port))
    try:
        await until(lambda: healthy(port), f"serve on {port}")
        yield server
        server.proc.send_signal(signal.SIGTERM)
        assert await server.wait() == 0, server.output
    finally:
        await server.kill()


def seen(fake: FakeWecom, user: str, marker: str) -> list[int]:
    """Positions (in WeCom's message order) of texts to `user` containing `marker`."""
    return [
        n
        for n, m in enumerate(fake.messages)
        if m["msgtype"] == "text" and m["touser"] == user and marker in m["text"]["content"]
    ]


async def test_a_live_server_reminds_in_wecom_then_escalates(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'returnhub.db'}"
    sla = REVIEW.format(minutes=1, remind_at="[0.5, 1.0]", escalate_to="ops_director")
    async with running(FakeWecom()) as fake:
        config = configure(tmp_path, url, monkeypatch, fake.url, sla)
        port = free_port()
        async with serving(tmp_path, config, port):
            case_id = await post_case(port, 1)

            async def escalated() -> bool:
                return bool(seen(fake, DIRECTOR, f"{case_id} 已升级给运营总监"))

            await until(escalated, "the escalation to the ops director")
    half = seen(fake, LEAD, "已用时 50%")
    full = seen(fake, LEAD, "已用时 100%")
    (up,) = seen(fake, DIRECTOR, "已升级")
    assert len(half) == len(full) == 1, fake.texts_to(LEAD)
    assert half[0] < full[0] < up, "50%, then 100%, then the escalation"
    assert seen(fake, OTHER_LEAD, "已用时 50%"), "every holder of the role is reminded"
    assert any(c["main_title"]["title"].startswith("售后审批") for c in fake.cards_to(DIRECTOR))


@pytest.mark.pg
async def test_two_servers_on_one_database_fire_every_timer_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = pg_or_skip()
    await empty_schema(url)
    cases = 20
    sla = REVIEW.format(minutes=0.25, remind_at="[1.0]", escalate_to="")
    async with running(FakeWecom()) as fake:
        config = configure(tmp_path, url, monkeypatch, fake.url, sla)
        first, second = free_port(), free_port()
        async with (
            serving(tmp_path, config, first) as one,
            serving(tmp_path, config, second) as two,
        ):
            ids = [await post_case((first, second)[n % 2], n) for n in range(cases)]
            db = Database(url)
            try:

                async def all_fired() -> bool:
                    async with db.read() as session:
                        fired = await session.scalar(
                            select(func.count()).where(Timer.status == "fired")
                        )
                    return fired == cases and all(
                        any(i in t for t in fake.texts_to(LEAD)) for i in ids
                    )

                await until(all_fired, "every case's reminder")
            finally:
                await db.dispose()
    texts = fake.texts_to(LEAD)
    for case_id in ids:
        assert sum(t.count(f"{case_id} 首次审批") for t in texts) == 1, (case_id, texts)
    assert "clock started" in one.output and "clock started" in two.output
