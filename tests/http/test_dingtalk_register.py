"""`returnhub dingtalk register-callback`: the card-callback route DingTalk is told
about, and the config it needs first."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from bot.cli import main
from bot.dingtalk_cli import problem, register
from bot.platforms.dingtalk import card_key
from tests.fakes.dingtalk import APP_SECRET, FakeDingtalk, running
from tests.fakes.dingtalk_callbacks import PUBLIC_URL, card_path, with_dingtalk
from tests.support import FakeClock, make_settings


@pytest.fixture
async def fake(clock: FakeClock) -> AsyncIterator[FakeDingtalk]:
    async with running(FakeDingtalk(clock=lambda: clock.now.timestamp())) as server:
        yield server


async def test_the_registered_url_is_the_one_the_card_route_accepts(
    tmp_path: Path, fake: FakeDingtalk
) -> None:
    settings = with_dingtalk(make_settings(tmp_path, "sqlite+aiosqlite:///x.db"), fake.url)
    assert problem(settings) is None
    async with aiohttp.ClientSession() as http:
        shown = await register(settings, http)
    (registered,) = fake.registered
    assert registered["callbackRouteKey"] == "returnhub" and registered["forceUpdate"] is True
    assert registered["callbackUrl"] == PUBLIC_URL + card_path()
    assert registered["apiSecret"] == card_key(APP_SECRET) != APP_SECRET
    assert shown == f"{PUBLIC_URL}/callbacks/dingtalk/card"  # the key is not printed
    assert "oauth2/accessToken" in fake.calls


def test_register_callback_needs_an_https_public_url(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = with_dingtalk(make_settings(tmp_path, "sqlite+aiosqlite:///x.db"), "http://x")
    insecure = dataclasses.replace(settings.server, public_url="http://bot.example.com")
    assert "https://" in (problem(dataclasses.replace(settings, server=insecure)) or "")
    path = tmp_path / "returnhub.toml"
    path.write_text('[database]\nurl = "sqlite+aiosqlite:///x.db"\n', encoding="utf-8")
    assert main(["dingtalk", "register-callback", "--config", str(path)]) == 2
    assert "app_key" in capsys.readouterr().err
