"""What the start-up report says about the API token is what the server does."""

from __future__ import annotations

from pathlib import Path

from bot.app import create_app
from bot.startup_report import startup_report
from storage.db import Database
from tests.support import MakeClient, make_settings


def _said(lines: list[str], words: str) -> bool:
    return any(words in text for text in lines)


async def test_an_empty_api_token_closes_the_read_api_as_reported(
    db: Database, tmp_path: Path, aiohttp_client: MakeClient
) -> None:
    settings = make_settings(tmp_path, db.url)  # [api] token = ""
    report = [line.text for line in startup_report(settings)]
    assert _said(report, "[api] token 为空：读取 API（/api/*）关闭，所有请求回答 401")
    client = await aiohttp_client(create_app(settings, background=False))
    for headers in ({}, {"Authorization": "Bearer"}, {"Authorization": "Bearer x"}):
        resp = await client.get("/api/cases", headers=headers)
        assert resp.status == 401, headers


async def test_in_demo_mode_only_loopback_passes_without_a_token(
    db: Database, tmp_path: Path, aiohttp_client: MakeClient
) -> None:
    settings = make_settings(tmp_path, db.url, demo=True)
    report = [line.text for line in startup_report(settings)]
    assert _said(report, "演示模式下仅本机直连可访问 /api/*，其余请求回答 401")
    client = await aiohttp_client(create_app(settings, background=False))
    assert (await client.get("/api/cases")).status == 200
    proxied = await client.get("/api/cases", headers={"X-Forwarded-For": "203.0.113.9"})
    assert proxied.status == 401
