"""The console in a real browser: Debian's Chromium driven by playwright.

The real app runs on a free loopback port in demo mode with the demo data seeded;
the clock ticks the outbox, so a click travels page -> event -> handler -> outbox
-> console platform -> poll -> re-rendered card, as in `returnhub demo`.
"""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web

from bot.app import create_app
from bot.appkeys import CTX, WORKER
from bot.demo import demo_settings, seed

pytestmark = pytest.mark.browser

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SCREENSHOT = Path("/tmp/console.png")  # noqa: S108 - a fixed place to look at by hand


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture
async def console_url(tmp_path: Path) -> AsyncIterator[str]:
    port = free_port()
    app = create_app(demo_settings(port, tmp_path / "var"))
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    try:
        await seed(app[CTX])
        await app[WORKER].drain()
        yield f"http://127.0.0.1:{port}/console"
    finally:
        await runner.cleanup()


@pytest.mark.skipif(
    not CHROMIUM.exists(), reason="Debian chromium is not installed (apt-get install -y chromium)"
)
async def test_lead_approves_and_director_sees_history(console_url: str) -> None:
    from playwright.async_api import async_playwright, expect

    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = await browser.new_page(viewport={"width": 1280, "height": 900})
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            await page.goto(console_url)

            await page.locator(".member", has_text="王组长").click()
            await expect(page.locator("#chat-title")).to_have_text("王组长")
            card = page.locator(".card", has_text="132.00").first
            await expect(card).to_be_visible()
            approve = card.locator(".card-buttons .btn", has_text="同意")
            await expect(approve).to_be_enabled()
            await approve.click()

            decided = page.locator(".card", has_text="132.00").first
            status = decided.locator(".card-status")
            await expect(status).to_contain_text("王组长", timeout=15_000)
            await expect(status).to_contain_text("同意")
            await expect(status).to_have_class("card-status good")
            for button in await decided.locator(".card-buttons .btn").all():
                await expect(button).to_be_disabled()
            await page.screenshot(path=str(SCREENSHOT.with_name("console-lead.png")))

            await page.locator(".member", has_text="李总监").click()
            await expect(page.locator("#chat-title")).to_have_text("李总监")
            big = page.locator(".card", has_text="2880.00").first
            await expect(big).to_be_visible()
            history = big.locator(".card-history li")
            await expect(history.first).to_be_visible()
            assert await history.count() >= 1

            await big.scroll_into_view_if_needed()
            await page.screenshot(path=str(SCREENSHOT), full_page=False)
            assert errors == []
        finally:
            await browser.close()


@pytest.mark.skipif(
    not CHROMIUM.exists(), reason="Debian chromium is not installed (apt-get install -y chromium)"
)
async def test_transfer_then_reject_with_a_reason(console_url: str) -> None:
    from playwright.async_api import async_playwright, expect

    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = await browser.new_page(viewport={"width": 1280, "height": 900})
            await page.goto(f"{console_url}#王组长")
            await expect(page.locator("#chat-title")).to_have_text("王组长")
            card = page.locator(".card:not(.closed)", has_text="38.00").first
            await card.locator(".btn", has_text="转交").click()
            await card.locator("select.prompt-input").select_option("刘组长")
            await card.locator(".btn", has_text="确认转交").click()
            moved = page.locator(".card.closed", has_text="38.00").first
            await expect(moved.locator(".card-status")).to_contain_text("转交给 刘组长")

            await page.locator(".member", has_text="刘组长").click()
            await expect(page.locator("#chat-title")).to_have_text("刘组长")
            mine = page.locator(".card:not(.closed)", has_text="38.00").last
            await mine.locator(".btn", has_text="驳回").click()
            confirm = mine.locator(".btn", has_text="确认驳回")
            await confirm.click()  # empty reason: the page asks for one, nothing is sent
            await expect(mine.locator("textarea.invalid")).to_be_visible()
            await mine.locator("textarea").fill("买家近 90 天多次以漏发为由申请，已核实发货完整")
            await confirm.click()
            rejected = page.locator(".card.closed", has_text="38.00").last
            status = rejected.locator(".card-status")
            await expect(status).to_contain_text("刘组长", timeout=15_000)
            await expect(status).to_contain_text("驳回：买家近 90 天")
            await expect(status).to_have_class("card-status bad")
            await expect(page.locator(".note-text").last).to_contain_text("原因：买家近 90 天")
        finally:
            await browser.close()
