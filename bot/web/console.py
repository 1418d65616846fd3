"""Routes of the local console: the page, its assets, and the JSON API it polls.

The console is a chat platform like WeCom or DingTalk, only the client is a web
page: posts become neutral events handled by the same handlers, and replies come
back through the outbox into `console_messages` (bot/platforms/console.py). It
has no platform deadline, so handlers run inline and the post answers after them.

Updated cards: a poll returns new rows (`id > after`) plus card rows changed since
the client's cursor. The cursor is the newest card `updated_at` the client has
seen, and the server looks back a margin before it, because a slower transaction
can commit a slightly older timestamp after a poll; each row carries `rev` (a
hash of its body), so the page re-renders only what really changed.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import Any, TypeVar

import jinja2
from aiohttp import web
from sqlalchemy import func, select

from bot.appkeys import CTX, DISPATCH, RENDERER
from bot.events import CardAction, ChatMessage
from bot.platforms.console import (
    ConsoleInputError,
    ConsolePlatform,
    click_label,
    event_uuid,
    is_member,
    parse_chat,
    parse_click,
)
from bot.settings import templates_dir
from bot.web.auth import require_login
from handlers.actions import on_card_action
from handlers.commands import on_chat_message
from handlers.context import Ctx
from handlers.people import ROLE_ZH
from storage.models import ConsoleMessage, Member

log = logging.getLogger(__name__)
E = TypeVar("E", ChatMessage, CardAction)

MAX_BODY = 16 * 1024
PAGE_LIMIT = 200
LOOKBACK = timedelta(seconds=10)
POLL_MS = 1000
ROLE_ORDER = tuple(ROLE_ZH)
ASSETS = {"console.js": "application/javascript", "console.css": "text/css"}
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
)
NOSNIFF = {"X-Content-Type-Options": "nosniff"}
PAGES: web.AppKey[jinja2.Environment] = web.AppKey("console_pages")
STATIC: web.AppKey[dict[str, bytes]] = web.AppKey("console_static")


def setup(app: web.Application) -> None:
    """Mount the console on `app` (bot/app.py calls this when [console] enabled)."""
    app[PAGES] = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(templates_dir() / "web")),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
    )
    # Read once at start-up: no file I/O on the event loop per request.
    app[STATIC] = {name: (templates_dir() / "web" / name).read_bytes() for name in ASSETS}
    app.router.add_get("/console", page)
    app.router.add_get("/console/static/{name}", asset)
    app.router.add_get("/console/api/members", members)
    app.router.add_get("/console/api/messages", messages)
    app.router.add_post("/console/api/send", send)
    app.router.add_post("/console/api/click", click)


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status, dumps=_dumps)


def _dumps(data: Any) -> str:
    return json.dumps(data, ensure_ascii=False)


def _version(request: web.Request, name: str) -> str:
    return hashlib.sha256(request.app[STATIC][name]).hexdigest()[:10]


async def page(request: web.Request) -> web.Response:
    require_login(request)
    ctx = request.app[CTX]
    template = request.app[PAGES].get_template("console.html.j2")
    html = template.render(
        demo=ctx.settings.server.demo,
        poll_ms=POLL_MS,
        js_version=_version(request, "console.js"),
        css_version=_version(request, "console.css"),
    )
    headers = {"Content-Security-Policy": CSP, "Referrer-Policy": "no-referrer", **NOSNIFF}
    return web.Response(text=html, content_type="text/html", headers=headers)


async def asset(request: web.Request) -> web.StreamResponse:
    """The page's script and stylesheet: a fixed whitelist, nothing else under templates/."""
    name = request.match_info["name"]
    if name not in ASSETS:
        raise web.HTTPNotFound()
    return web.Response(
        body=request.app[STATIC][name],
        content_type=ASSETS[name],
        charset="utf-8",
        headers={"Cache-Control": "no-cache", **NOSNIFF},
    )


async def members(request: web.Request) -> web.Response:
    """Everyone who can chat with the bot, with zh role labels and their newest message id."""
    require_login(request)
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
    return web.json_response({"members": rows}, dumps=_dumps)


def _role_rank(role: str) -> tuple[int, str]:
    return (ROLE_ORDER.index(role) if role in ROLE_ORDER else len(ROLE_ORDER), role)


def _view(ctx: Ctx, row: ConsoleMessage) -> dict[str, Any]:
    body = dict(row.body)
    body.pop("outbox_id", None)
    rev = hashlib.sha256(_dumps(body).encode()).hexdigest()[:12]
    local = ctx.local(row.created_at)
    return {
        "id": row.id,
        "direction": row.direction,
        **body,
        "rev": rev,
        "time": local.strftime("%m-%d %H:%M"),
    }


def _parse_cursor(raw: str) -> datetime | None:
    if not raw:
        return None
    try:
        return datetime.fromisoformat(raw).replace(tzinfo=None)
    except ValueError:
        raise web.HTTPBadRequest(
            text=_dumps({"error": "since 格式不正确"}), content_type="application/json"
        ) from None


async def messages(request: web.Request) -> web.Response:
    """`?user=&after=&since=` -> new rows, re-rendered cards, and the next cursor."""
    require_login(request)
    ctx = request.app[CTX]
    user = request.query.get("user", "")
    try:
        after = int(request.query.get("after", "0"))
    except ValueError:
        return _error(400, "after 必须是整数")
    since = _parse_cursor(request.query.get("since", ""))
    if after < 0 or not user or not await is_member(ctx.db, user):
        return _error(400, "未知成员或参数不正确")
    mine = ConsoleMessage.user_id == user
    async with ctx.db.read() as session:
        if after == 0:
            # First load: the newest page of the chat, oldest first.
            query = select(ConsoleMessage).where(mine).order_by(ConsoleMessage.id.desc())
            fresh = list(await session.scalars(query.limit(PAGE_LIMIT)))[::-1]
        else:
            query = select(ConsoleMessage).where(mine, ConsoleMessage.id > after)
            fresh = list(
                await session.scalars(query.order_by(ConsoleMessage.id).limit(PAGE_LIMIT))
            )
        changed: list[ConsoleMessage] = []
        if since is not None and after > 0:
            query = select(ConsoleMessage).where(
                mine,
                ConsoleMessage.id <= after,
                ConsoleMessage.card_id.is_not(None),
                ConsoleMessage.updated_at >= since - LOOKBACK,
            )
            changed = list(await session.scalars(query.order_by(ConsoleMessage.id)))
    cards = [r.updated_at for r in (*fresh, *changed) if r.card_id is not None]
    cursor = max([*cards, *([since] if since else [])], default=None)
    return web.json_response(
        {
            "messages": [_view(ctx, r) for r in fresh],
            "updated": [_view(ctx, r) for r in changed],
            "last_id": fresh[-1].id if fresh else after,
            "more": after > 0 and len(fresh) == PAGE_LIMIT,
            "cursor": cursor.isoformat() if cursor else "",
        },
        dumps=_dumps,
    )


async def _read_json(request: web.Request) -> Any:
    """The post's JSON body, bounded; raises ConsoleInputError or an HTTP error."""
    if request.content_type != "application/json":
        raise web.HTTPUnsupportedMediaType(
            text=_dumps({"error": "请求必须是 application/json"}), content_type="application/json"
        )
    if request.content_length is not None and request.content_length > MAX_BODY:
        raise _too_large(request.content_length)
    raw = await request.content.read(MAX_BODY + 1)
    if len(raw) > MAX_BODY:
        raise _too_large(len(raw))
    try:
        return json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise ConsoleInputError("请求体不是合法的 JSON") from None


def _too_large(size: int) -> web.HTTPRequestEntityTooLarge:
    return web.HTTPRequestEntityTooLarge(
        MAX_BODY, size, text=_dumps({"error": f"请求体过大（上限 {MAX_BODY} 字节）"}),
        content_type="application/json",
    )  # fmt: skip


async def _parse(request: web.Request, parse: Callable[[object], E]) -> tuple[Any, E]:
    """Body and event, or ConsoleInputError (also for a name that is no member)."""
    data = await _read_json(request)
    event = parse(data)
    user = event.sender.user_id
    if not await is_member(request.app[CTX].db, user):
        raise ConsoleInputError(f"未知成员：{user}")
    return data, event


async def _deliver(
    request: web.Request, user: str, note: dict[str, Any], run: Callable[[], Awaitable[Any]]
) -> web.Response:
    """Show the person's own post in their timeline, then run the handler inline."""
    ctx = request.app[CTX]
    platform = ConsolePlatform(ctx.db, request.app[RENDERER], clock=ctx.clock)
    shown = await platform.record_inbound(user, note)
    try:
        await run()
    except Exception:
        log.exception("console post %s from %s failed", note["uuid"], user)
        return _error(500, "处理失败，请稍后重试")
    return web.json_response({"ok": True, "id": shown})


async def send(request: web.Request) -> web.Response:
    """A chat message from the page: a command, a waybill scan, a reply."""
    require_login(request)
    try:
        _, event = await _parse(request, parse_chat)
    except ConsoleInputError as exc:
        log.info("console %s rejected: %s", request.path, exc)
        return _error(400, str(exc))
    note = {"type": "text", "text": event.text, "uuid": event_uuid(event.key)}
    dispatch = request.app[DISPATCH]
    return await _deliver(
        request, event.sender.user_id, note, lambda: dispatch.run(on_chat_message, event)
    )


async def click(request: web.Request) -> web.Response:
    """A card button, with the reject reason / transfer target the page collected."""
    require_login(request)
    try:
        data, event = await _parse(request, parse_click)
    except ConsoleInputError as exc:
        log.info("console %s rejected: %s", request.path, exc)
        return _error(400, str(exc))
    note = {
        "type": "action", "label": click_label(data), "reason": event.reason,
        "target": event.target, "uuid": event_uuid(event.key),
    }  # fmt: skip
    dispatch = request.app[DISPATCH]
    return await _deliver(
        request, event.sender.user_id, note, lambda: dispatch.run(on_card_action, event)
    )
