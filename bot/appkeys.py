"""Typed application state (aiohttp AppKey): the one place services hang off the app."""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web

if TYPE_CHECKING:
    from bot.cards import CardRenderer
    from bot.dispatch import Dispatcher
    from bot.metrics import Metrics
    from bot.outbox import OutboxWorker
    from bot.platforms.console import ConsolePlatform
    from bot.platforms.evidence import Keeper
    from bot.writer import Writer
    from handlers.context import Ctx

CTX: web.AppKey[Ctx] = web.AppKey("ctx")
CONSOLE: web.AppKey[ConsolePlatform] = web.AppKey("console")
DISPATCH: web.AppKey[Dispatcher] = web.AppKey("dispatch")
METRICS: web.AppKey[Metrics] = web.AppKey("metrics")
KEEPER: web.AppKey[Keeper] = web.AppKey("keeper")  # the evidence store's writer
RENDERER: web.AppKey[CardRenderer] = web.AppKey("renderer")
WORKER: web.AppKey[OutboxWorker] = web.AppKey("worker")
WRITER: web.AppKey[Writer] = web.AppKey("writer")
