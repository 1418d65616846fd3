"""Routes of the local console: the page, its assets, and the member list.

The console is a chat platform like WeCom or DingTalk, only the client is a web
page: posts (console_post.py) become neutral events handled by the same
handlers, and replies come back through the outbox into `console_messages`
(bot/platforms/console.py), which reach the page by server push
(console_stream.py, fed by console_feed.py) or, where that fails, by polling
(console_poll.py). A case's timeline is console_timeline.py. Who the page acts
as is bot/web/auth.py's answer; signing in is console_login.py.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime

from aiohttp import web
from sqlalchemy import func, select

from bot.appkeys import CONSOLE, CTX
from bot.cards import CardRenderer
from bot.platforms.console import ConsolePlatform
from bot.web import console_login, console_photo, console_stream, console_timeline, evidence_files
from bot.web import console_pages as pages
from bot.web.auth import console_member
from bot.web.console_feed import ConsoleFeed
from bot.web.console_poll import dumps, messages, view
from bot.web.console_post import click, send
from handlers.people import ROLE_ZH
from storage.db import Database
from storage.models import ConsoleMessage, Member

log = logging.getLogger(__name__)

POLL_MS = 1000
ROLE_ORDER = tuple(ROLE_ZH)


def platform(
    app: web.Application, db: Database, renderer: CardRenderer, clock: Callable[[], datetime]
) -> ConsolePlatform:
    """The process's console platform, whose every commit wakes the process's one feed."""
    feed = ConsoleFeed(db, lambda row: view(app[CTX], row))
    app[console_stream.FEED] = feed
    console = app[CONSOLE] = ConsolePlatform(db, renderer, clock=clock, changed=feed.kick)
    return console


def setup(app: web.Application) -> None:
    """Mount the console on `app` (bot/app.py calls this, after `platform`, when [console]
    is enabled)."""
    pages.setup(app)
    app.router.add_get("/console", page)
    console_login.setup(app)
    app.router.add_get("/console/static/{name}", asset)
    app.router.add_get("/console/api/members", members)
    app.router.add_get("/console/api/messages", messages)
    console_stream.setup(app)
    console_timeline.setup(app)
    app.router.add_post("/console/api/send", send)
    app.router.add_post("/console/api/click", click)
    console_photo.setup(app)
    evidence_files.setup_console(app)


async def page(request: web.Request) -> web.Response:
    """The chat page; a browser without a session gets the login page instead (401).

    Signed in, the page is locked to that member (`me`); in demo mode on loopback it
    offers every member.
    """
    try:
        me = await console_member(request)
    except (web.HTTPUnauthorized, web.HTTPForbidden):
        if "text/html" not in request.headers.get("Accept", ""):
            raise
        return pages.render(request, console_login.PAGE, 401, error="", code="", member="")
    ctx = request.app[CTX]
    return pages.render(
        request,
        pages.CHAT_PAGE,
        demo=ctx.settings.server.demo,
        poll_ms=POLL_MS,
        me=me or "",
        photo_max=ctx.settings.photos.max_bytes,
    )


async def asset(request: web.Request) -> web.StreamResponse:
    """The page's script and stylesheet: a fixed whitelist, nothing else under templates/."""
    name = request.match_info["name"]
    if name not in pages.ASSETS:
        raise web.HTTPNotFound()
    return web.Response(
        body=request.app[pages.STATIC][name],
        content_type=pages.ASSETS[name],
        charset="utf-8",
        headers={"Cache-Control": "no-cache", **pages.NOSNIFF},
    )


async def members(request: web.Request) -> web.Response:
    """Everyone who can chat with the bot, with zh role labels and their newest message id;
    `me` is the signed-in member the page is locked to ("" in demo mode on loopback)."""
    me = await console_member(request)
    async with request.app[CTX].db.read() as session:
        active = select(Member).where(Member.active.is_(True)).order_by(Member.id)
        people = list(await session.scalars(active))
        last = (
            select(ConsoleMessage.user_id, func.max(ConsoleMessage.id))
            .where(ConsoleMessage.direction == "out")
            .group_by(ConsoleMessage.user_id)
        )
        newest = {user: int(top) for user, top in await session.execute(last)}
    rows = []
    for member in people:
        roles = sorted(member.role_names, key=_role_rank)
        rows.append(
            {
                "name": member.name,
                "roles": roles,
                "role_labels": [ROLE_ZH.get(r, r) for r in roles],
                "last_id": newest.get(member.name, 0),
            }
        )
    return web.json_response({"members": rows, "me": me or ""}, dumps=dumps)


def _role_rank(role: str) -> tuple[int, str]:
    return (ROLE_ORDER.index(role) if role in ROLE_ORDER else len(ROLE_ORDER), role)
