"""The composition root: `create_app(settings)` wires everything; nothing connects at import.

Start-up (cleanup_ctx): migrate, sync members from config, start the clock.
Shutdown, in order: stop intake, commit and answer what the writer holds, drain
accepted work, stop the scheduler (which
flushes the outbox once more), close HTTP clients, dispose the engine.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from bot import appkeys
from bot.alerts import tell_admins, tell_sender
from bot.cards import CardRenderer
from bot.channels import generic, generic_orders
from bot.channels.base import channel_performers
from bot.channels.polling import PollRunner
from bot.channels.wiring import Marketplaces
from bot.clock import Clock
from bot.delivery import build_worker, chat_limits
from bot.digest_delivery import digest_performers
from bot.dispatch import Dispatcher
from bot.events import CardAction, ChannelNotice, ChatMessage, ImageMessage, PhotoStored
from bot.metrics import Metrics
from bot.outbox import Performer
from bot.platforms import dingtalk, dingtalk_stream, wecom
from bot.platforms.base import Platform, chat_performers
from bot.platforms.dingtalk_events import Unsupported
from bot.platforms.dingtalk_sessions import Sessions
from bot.platforms.evidence import Keeper, media_performers
from bot.platforms.inbound import epoch
from bot.settings import Settings, templates_dir
from bot.web import api, dashboard, edge, export, health
from bot.web import console as console_web
from bot.writer import Writer
from handlers import intake_submit, orders, sla
from handlers.actions import card_action, on_card_action
from handlers.approvals import resend_unseen
from handlers.commands import chat_message, on_chat_message
from handlers.context import Ctx, utcnow
from handlers.digest import DailyDigest
from handlers.intake import apply_requests
from handlers.intake_submit import via_writer
from handlers.people import sync_members
from handlers.photos import on_image_message, on_photo_stored
from handlers.unsupported import reply_unsupported
from storage import inbound as inbound_rows
from storage.db import Database
from storage.evidence import EvidenceStore
from storage.migrate import upgrade
from storage.secrets import load_keyring

log = logging.getLogger(__name__)

HTTP: web.AppKey[aiohttp.ClientSession] = web.AppKey("http", aiohttp.ClientSession)
POLLS: web.AppKey[PollRunner] = web.AppKey("polls", PollRunner)
OUTBOUND_TIMEOUT = aiohttp.ClientTimeout(total=10, connect=3)
DIGEST_JOB_ID = "digest-tick"
DIGEST_EVERY_SECONDS = 30.0  # the digest goes out within half a minute of its time


def create_app(
    settings: Settings,
    *,
    clock: Callable[[], datetime] | None = None,
    background: bool = True,
    migrate: bool = True,
) -> web.Application:
    """Build the app. `background=False` leaves the scheduler off (tests drive the worker)."""
    app = web.Application(
        client_max_size=settings.server.max_body_bytes,
        middlewares=[health.metrics_middleware, edge.edge_middleware],
    )
    db = Database(
        settings.database.url,
        timeout=settings.database.timeout_seconds,
        statement_timeout=settings.database.statement_timeout_seconds,
    )
    renderer = CardRenderer(templates_dir())
    now = clock or utcnow
    platforms: dict[str, Platform] = {}
    if settings.console.enabled:
        platforms["console"] = console_web.platform(app, db, renderer, now)
    link = settings.server.public_url

    async def alert(text: str) -> None:  # adapters alert only once running, after ctx is set
        await tell_admins(ctx, text)

    platforms.update(
        wecom.build_platforms(settings.wecom, renderer, lambda: app[HTTP], link=link, alert=alert)
    )
    sessions = Sessions(settings.dingtalk.oapi_base, lambda: int(epoch(now)() * 1000))
    platforms.update(
        dingtalk.build_platforms(settings.dingtalk, renderer, lambda: app[HTTP], sessions)
    )
    ctx = Ctx(db=db, settings=settings, clock=now, platforms=tuple(platforms))
    metrics = Metrics()
    marketplaces = Marketplaces(
        settings, lambda: app[HTTP], lambda: app[appkeys.CTX].clock(), alert, db
    )
    app[appkeys.CTX] = ctx
    app[appkeys.METRICS] = metrics
    evidence = EvidenceStore(Path(settings.files.evidence))
    keeper = app[appkeys.KEEPER] = Keeper(evidence, settings.photos.max_bytes, alert)
    app[appkeys.RENDERER] = renderer

    async def resources(app: web.Application) -> AsyncIterator[None]:
        if migrate:
            await upgrade(db)
        # The signing keys live in the database (storage/secrets.py): load them first.
        grace = timedelta(days=settings.server.secret_grace_days)
        keyring = await load_keyring(db, settings.server.secret, grace, app[appkeys.CTX].now())
        ctx = app[appkeys.CTX] = dataclasses.replace(app[appkeys.CTX], keyring=keyring)
        async with db.transaction() as session:
            await sync_members(session, settings.members)
            await resend_unseen(session, ctx)
        http = aiohttp.ClientSession(timeout=OUTBOUND_TIMEOUT)
        app[HTTP] = http
        performers: dict[str, Performer] = {
            **chat_performers(platforms, db),
            **digest_performers(platforms),
            **media_performers(
                platforms,
                keeper,
                lambda event: app[appkeys.DISPATCH].accept(event),  # set below, before a tick
                lambda sender, text: tell_sender(ctx, sender, text),
            ),
            **channel_performers(
                {
                    "generic": generic.GenericClient(settings.channels.generic, http, ctx.clock),
                    **marketplaces.clients,
                }
            ),
        }
        worker = build_worker(
            ctx,
            performers,
            metrics=metrics,
            rate_limits=chat_limits(settings.outbox),
        )
        app[appkeys.WORKER] = worker
        # One group-commit writer for every edge (bot/writer.py); each batch wakes the outbox.
        writer = app[appkeys.WRITER] = Writer(
            db,
            max_batch=settings.database.write_batch,
            concurrency=settings.database.write_concurrency,
            kick=lambda: ticker.kick(),
        )
        writer.register(
            intake_submit.KIND, lambda session, events: apply_requests(session, ctx, events)
        )
        writer.register(
            orders.KIND, lambda session, events: orders.apply_orders(session, ctx, events)
        )
        dispatcher = Dispatcher(
            ctx,
            {
                ChatMessage: on_chat_message,
                CardAction: on_card_action,
                ImageMessage: on_image_message,
                ChannelNotice: marketplaces.notice_handler(
                    lambda event, ctx: via_writer(writer.submit, ctx, event)
                ),
                PhotoStored: on_photo_stored,
            },
            kick=lambda: ticker.kick(),
            writer=writer,
            batched={ChatMessage: chat_message, CardAction: card_action},
        )
        ticker = Clock(
            worker,
            lambda session, timer: sla.fire(session, ctx, timer),
            db,
            settings.outbox,
            recover=dispatcher.recover,
            timer_finish=lambda session: sla.finish(session, ctx),
            jobs={DIGEST_JOB_ID: (DIGEST_EVERY_SECONDS, DailyDigest(ctx).tick)},
        )
        app[appkeys.DISPATCH] = dispatcher
        app[POLLS] = polls = marketplaces.poll_runner(dispatcher.accept)
        # SQLite has one serving process: an event a killed predecessor acknowledged and
        # never handled is nobody's now, so it is recovered at once, not after
        # dispatch.GRACE (which leaves a live replica on PostgreSQL its time).
        if background and db.is_sqlite and (taken := await inbound_rows.due_now(db, ctx.clock())):
            log.warning("%d acknowledged events left unhandled; recovering them now", taken)
        if background:
            await ticker.start()
            polls.start()
        for hook in app[STARTED]:
            await hook(app)
        log.info("returnhub ready (platforms: %s)", ", ".join(platforms) or "none")
        yield
        await polls.stop()
        await app[appkeys.DISPATCH].drain()
        await ticker.stop()
        await http.close()
        await db.dispose()

    app[STARTED] = []
    app.cleanup_ctx.append(resources)
    health.setup(app)
    api.setup(app)
    export.setup(app)
    dashboard.setup(app)
    generic.setup(app, lambda event, ctx: via_writer(app[appkeys.WRITER].submit, ctx, event))
    generic_orders.setup(app, lambda event: app[appkeys.WRITER].submit(orders.KIND, event))
    marketplaces.setup(
        app,
        accept=lambda notice: app[appkeys.DISPATCH].accept(notice),
        intake=lambda event, ctx: via_writer(app[appkeys.WRITER].submit, ctx, event),
    )
    if settings.console.enabled:
        console_web.setup(app)
    if settings.wecom.enabled:
        wecom.setup(app)
    if settings.dingtalk.enabled:

        async def unsupported(event: Unsupported) -> None:
            await app[appkeys.DISPATCH].run(
                lambda e, c: reply_unsupported(c, e.key, e.sender), event
            )

        dingtalk.install(app, sessions, unsupported)
        dingtalk.setup(app)
        if settings.dingtalk.mode == "stream":
            dingtalk_stream.setup(app, lambda: app[HTTP])
    return app


StartHook = Callable[[web.Application], Awaitable[Any]]
STARTED: web.AppKey[list[StartHook]] = web.AppKey("started", list)
