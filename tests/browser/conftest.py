"""What the browser tests share: Debian's Chromium, its flags, the demo app on loopback,
fresh pages, and how a person reads the console (whose chat is open, a card's status)."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest
from aiohttp import web
from playwright.async_api import Browser, Locator, Page, async_playwright, expect

from bot.app import create_app
from bot.appkeys import CTX, WORKER
from bot.demo import demo_settings, seed

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


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture
async def demo(tmp_path: Path) -> AsyncIterator[tuple[web.Application, str]]:
    """The demo app serving on loopback, seeded and delivered; (app, console URL)."""
    port = free_port()
    app = create_app(demo_settings(port, tmp_path / "var"))
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    try:
        await seed(app[CTX])
        await app[WORKER].drain()
        yield app, f"http://127.0.0.1:{port}/console"
    finally:
        await runner.cleanup()


@pytest.fixture
def console_url(demo: tuple[web.Application, str]) -> str:
    return demo[1]


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            await browser.close()


@pytest.fixture
async def pages(browser: Browser) -> AsyncIterator[Callable[..., Awaitable[Page]]]:
    """Fresh Chromium pages, each in its own context (its own storage, as two people on
    two machines); fails the test on any uncaught script error."""
    errors: list[str] = []

    async def new(width: int = 1280, height: int = 900) -> Page:
        context = await browser.new_context(viewport={"width": width, "height": height})
        page = await context.new_page()
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        return page

    yield new
    assert errors == []


@pytest.fixture
async def page(pages: Callable[..., Awaitable[Page]]) -> Page:
    return await pages()


async def open_chat(page: Page, url: str, name: str) -> None:
    await page.goto(f"{url}#{name}")
    await expect(page.locator("#chat-title")).to_have_text(name)


async def expect_decided(card: Locator, who: str, words: str, tone: str) -> None:
    """The card's status line, as a person sees it: who decided what, in the right colour."""
    status = card.locator(".card-status")
    await expect(status).to_contain_text(who, timeout=15_000)  # the outbox round trip
    await expect(status).to_be_visible()
    await expect(status).to_contain_text(words)
    await expect(status).to_have_class(f"card-status {tone}")
