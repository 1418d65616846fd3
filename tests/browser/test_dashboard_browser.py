"""The dashboard in a real browser (Debian's Chromium) on the demo data: the tiles show
what the figures say, the charts are drawn, and the page fits a phone."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web
from playwright.async_api import Page, async_playwright, expect

from bot.appkeys import CTX
from bot.money import yuan
from handlers import dashboard_figures as figures
from handlers import reports
from tests.browser.conftest import CHROMIUM, CHROMIUM_ARGS

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian chromium is not installed"),
]
SCREENSHOT = Path("/tmp/dashboard.png")  # noqa: S108 - a fixed place to look at by hand


@pytest.fixture
async def browser_page() -> AsyncIterator[Page]:
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield await browser.new_page(viewport={"width": 1280, "height": 900})
        finally:
            await browser.close()


async def test_the_tiles_and_charts_show_the_figures(
    demo: tuple[web.Application, str], browser_page: Page
) -> None:
    app, console = demo
    url = console.replace("/console", "/dashboard")
    ctx = app[CTX]
    async with ctx.db.read() as session:
        today = reports.period("today", ctx.now(), ctx.zone)
        tiles = await figures.tiles(session, today)
    page = browser_page
    await page.goto(url)
    await expect(page.locator("h2", has_text="退货原因（一级）")).to_be_visible()
    expected = {
        "new": str(tiles.new),
        "pending_review": str(tiles.pending_review),
        "on_hold": str(tiles.on_hold),
        "refund_pending": f"¥{yuan(tiles.refund_pending_fen)}",
    }
    for kpi, value in expected.items():
        await expect(page.locator(f'[data-kpi="{kpi}"] .n')).to_have_text(value)
    assert tiles.new > 0  # the demo seed is today's
    assert await page.locator("svg.chart").count() >= 3
    assert await page.locator("svg.chart.bars rect.bar").count() > 0
    await page.screenshot(path=str(SCREENSHOT), full_page=True)

    await page.select_option("select[name=period]", "month")
    await page.locator("button", has_text="查看").click()
    await expect(page.locator('[data-kpi="new"] .k')).to_contain_text("本月")

    await page.set_viewport_size({"width": 390, "height": 844})
    await page.goto(url)
    overflow = await page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
    assert overflow <= 1, overflow  # nothing wider than a phone
    await page.screenshot(path=str(SCREENSHOT.with_name("dashboard-phone.png")), full_page=True)
