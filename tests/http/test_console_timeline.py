"""`GET /console/api/cases/{id}/timeline` over HTTP on both engines: a decision made in
the console shows in the case's timeline, with who and the local time; sign-in needed."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import Any
from uuid import uuid4

import pytest

from bot.app import create_app
from bot.appkeys import CTX, WORKER
from bot.demo import demo_settings, seed
from bot.settings import Settings
from storage.db import Database
from tests.support import Client, MakeClient


@pytest.fixture
def settings(tmp_path: Path, db: Database) -> Settings:
    base = demo_settings(8080, tmp_path / "var")
    return dataclasses.replace(base, database=dataclasses.replace(base.database, url=db.url))


@pytest.fixture
async def client(settings: Settings, aiohttp_client: MakeClient) -> Client:
    client = await aiohttp_client(create_app(settings, background=False))
    await seed(client.app[CTX])
    await client.app[WORKER].drain()
    return client


async def get(client: Client, path: str, status: int = 200) -> dict[str, Any]:
    resp = await client.get(path)
    assert resp.status == status, await resp.text()
    data: dict[str, Any] = await resp.json()
    return data


async def test_a_console_decision_shows_in_the_timeline(client: Client) -> None:
    chat = await get(client, "/console/api/messages?user=王组长&after=0")
    card = next(m["card"] for m in chat["messages"] if "132.00" in str(m.get("card")))
    token = next(b["token"] for b in card["buttons"] if b["action"] == "approve")
    body = {"user": "王组长", "token": token, "label": "同意", "uuid": str(uuid4())}
    assert (await client.post("/console/api/click", json=body)).status == 200

    data = await get(client, f"/console/api/cases/{card['case_id'].lower()}/timeline")
    assert data["case_id"] == card["case_id"] and data["status"] == "退款中"
    labels = [e["label"] for e in data["entries"]]
    assert labels == ["收到售后申请", "进入审批", "分派审批", "审批同意", "放行退款"]
    decided = data["entries"][3]
    assert (decided["actor"], decided["tone"]) == ("王组长", "good")
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", decided["time"])


async def test_unknown_and_malformed_case_ids(client: Client) -> None:
    missing = await get(client, "/console/api/cases/RC-000000-0000/timeline", 404)
    assert "没有售后单" in missing["error"]
    await get(client, "/console/api/cases/not-a-case/timeline", 400)


async def test_the_timeline_needs_a_sign_in(
    settings: Settings, aiohttp_client: MakeClient
) -> None:
    private = dataclasses.replace(
        settings, server=dataclasses.replace(settings.server, demo=False)
    )
    client = await aiohttp_client(create_app(private, background=False))
    await get(client, "/console/api/cases/RC-261201-0001/timeline", 401)
