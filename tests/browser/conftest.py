"""What the browser tests share: Debian's Chromium, its flags, and the demo app on loopback."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web

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
