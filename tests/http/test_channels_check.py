"""`returnhub channels check` and the startup report against the fake 抖店 and Shopify."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from bot.channels.check import check_channels
from bot.cli import main
from bot.startup_report import render
from tests.fakes.douyin import douyin_settings, running_douyin
from tests.fakes.jd import jd_settings, running_jos
from tests.fakes.shopify import running_shopify, shopify_settings
from tests.fakes.taobao import running_top, taobao_settings
from tests.support import FakeClock, make_settings


async def test_working_credentials_are_named_per_shop(tmp_path: Path) -> None:
    clock = FakeClock()
    async with running_douyin(clock) as fake:
        settings = douyin_settings(tmp_path, f"sqlite+aiosqlite:///{tmp_path}/x.db", fake.url)
        lines, ok = await check_channels(settings)
    assert ok and lines == ["✓ 抖店 95250: 凭证可用 / credentials work"]
    assert fake.calls == ["afterSale/List"]


async def test_a_bad_secret_is_reported_and_fails(tmp_path: Path) -> None:
    clock = FakeClock()
    async with running_douyin(clock) as fake:
        settings = douyin_settings(
            tmp_path, f"sqlite+aiosqlite:///{tmp_path}/x.db", fake.url, app_secret="wrong"
        )
        lines, ok = await check_channels(settings)
    assert not ok
    assert lines[0].startswith("✗ 抖店 95250:") and "signature-invalid" in lines[0]


async def test_shopify_credentials(tmp_path: Path) -> None:
    async with running_shopify() as fake:
        settings = shopify_settings(tmp_path, f"sqlite+aiosqlite:///{tmp_path}/x.db", fake.url)
        lines, ok = await check_channels(settings)
    assert ok and lines == [
        "✓ Shopify pet-supplies.myshopify.com: 凭证可用（Pet Supplies）/ credentials work"
    ]


def test_no_marketplace_is_not_a_failure(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = make_settings(tmp_path, f"sqlite+aiosqlite:///{tmp_path}/x.db")
    assert main(["channels", "check", "--config", settings.source]) == 0
    assert "未配置任何电商渠道" in capsys.readouterr().out


async def test_the_startup_report_names_the_live_shops(tmp_path: Path) -> None:
    clock = FakeClock()
    async with running_douyin(clock) as fake:
        douyin = douyin_settings(
            tmp_path, f"sqlite+aiosqlite:///{tmp_path}/x.db", fake.url, refresh_token=""
        )
    lines = render(douyin)
    assert any(
        "live: 抖店（95250；推送 /webhooks/douyin；对账轮询每 10 分钟）" in line for line in lines
    )
    assert any("未设置 refresh_token" in line and line.startswith("警告") for line in lines)
    assert not any("channels.douyin] 已配置但尚未支持" in line for line in lines)


async def test_taobao_and_jd_credentials_and_their_report(tmp_path: Path) -> None:
    clock = FakeClock(datetime.now(UTC))  # `channels check` signs with the real time
    url = f"sqlite+aiosqlite:///{tmp_path}/x.db"
    for name in "tbj":
        (tmp_path / name).mkdir()
    async with running_top(clock) as top, running_jos(clock) as jos:
        taobao = taobao_settings(tmp_path / "t", url, top.url)
        lines, ok = await check_channels(taobao)
        assert ok and lines == ["✓ 淘宝/天猫 喵星旗舰店: 凭证可用 / credentials work"]
        bad = taobao_settings(tmp_path / "b", url, top.url, session="expired")
        lines, ok = await check_channels(bad)
        assert not ok and "27 Invalid session" in lines[0]
        jd = jd_settings(tmp_path / "j", url, jos.url)
        lines, ok = await check_channels(jd)
        assert ok and lines == ["✓ 京东 jd-pets: 凭证可用 / credentials work"]
    assert any(
        "live: 淘宝/天猫（喵星旗舰店；TMC 消息轮询每 1 秒）" in line for line in render(taobao)
    )
    assert any("live: 京东（jd-pets；退款申请轮询每 60 秒）" in line for line in render(jd))
