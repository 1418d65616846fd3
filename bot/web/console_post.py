"""`POST /console/api/send` and `/console/api/click`: what a person types or clicks.

Each post is checked for its origin (another site's page must not post to a demo
on loopback), read whole up to a small limit, and turned into a neutral event
(bot/platforms/console.py). The person's own post is shown in their timeline,
then the handler runs inline: the console has no platform deadline to meet.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from aiohttp import web

from bot.appkeys import CONSOLE, CTX, DISPATCH
from bot.events import CardAction, ChatMessage
from bot.platforms.console import (
    ConsoleInputError,
    click_label,
    event_uuid,
    is_member,
    parse_chat,
    parse_click,
)
from bot.web.auth import acting_as, console_member, require_same_origin
from bot.web.body import BodyTooLarge, read_body
from bot.web.console_poll import dumps, error
from handlers.actions import on_card_action
from handlers.commands import on_chat_message
from storage.db import is_unavailable

log = logging.getLogger(__name__)
E = TypeVar("E", ChatMessage, CardAction)

MAX_BODY = 16 * 1024


async def read_json(request: web.Request) -> Any:
    """The post's JSON body, bounded; raises ConsoleInputError or an HTTP error."""
    if request.content_type != "application/json":
        raise web.HTTPUnsupportedMediaType(
            text=dumps({"error": "请求必须是 application/json"}), content_type="application/json"
        )
    try:
        raw = await read_body(request, MAX_BODY)
    except BodyTooLarge as exc:
        raise web.HTTPRequestEntityTooLarge(
            MAX_BODY, exc.size, text=dumps({"error": f"请求体过大（上限 {MAX_BODY} 字节）"}),
            content_type="application/json",
        ) from None  # fmt: skip
    try:
        return json.loads(raw)
    except (ValueError, RecursionError):  # bad UTF-8 or JSON, a 5000-digit int, deep nesting
        raise ConsoleInputError("请求体不是合法的 JSON") from None


async def _parse(
    request: web.Request, parse: Callable[[object], E], me: str | None
) -> tuple[Any, E]:
    """Body and event, or ConsoleInputError (also for a name that is no member); 403 if a
    signed-in member names someone else."""
    data = await read_json(request)
    event = parse(data)
    user = event.sender.user_id
    acting_as(me, user)
    if not await is_member(request.app[CTX].db, user):
        raise ConsoleInputError(f"未知成员：{user}")
    return data, event


async def deliver(
    request: web.Request, user: str, note: dict[str, Any], run: Callable[[], Awaitable[Any]]
) -> web.Response:
    """Show the person's own post in their timeline, then run the handler inline."""
    shown = await request.app[CONSOLE].record_inbound(user, note)
    try:
        await run()
    except Exception as exc:
        if is_unavailable(exc):
            raise  # the edge answers 503: retry later
        log.exception("console post %s from %s failed", note["uuid"], user)
        return error(500, "处理失败，请稍后重试")
    return web.json_response({"ok": True, "id": shown})


async def _post(
    request: web.Request,
    parse: Callable[[object], E],
    note: Callable[[dict[str, Any], E], dict[str, Any]],
    handler: Callable[[E, Any], Awaitable[Any]],
) -> web.Response:
    """Origin, member, body -> event; then the person's note in the timeline and the handler."""
    require_same_origin(request)
    me = await console_member(request)
    try:
        data, event = await _parse(request, parse, me)
    except ConsoleInputError as exc:
        log.info("console %s rejected: %s", request.path, exc)
        return error(400, str(exc))
    dispatch = request.app[DISPATCH]
    shown = {**note(data, event), "uuid": event_uuid(event.key)}
    return await deliver(
        request, event.sender.user_id, shown, lambda: dispatch.run(handler, event)
    )


async def send(request: web.Request) -> web.Response:
    """A chat message from the page: a command, a waybill scan, a reply."""

    def note(_: dict[str, Any], event: ChatMessage) -> dict[str, Any]:
        return {"type": "text", "text": event.text}

    return await _post(request, parse_chat, note, on_chat_message)


async def click(request: web.Request) -> web.Response:
    """A card button, with the reject reason / transfer target the page collected."""

    def note(data: dict[str, Any], event: CardAction) -> dict[str, Any]:
        label = click_label(data)
        return {"type": "action", "label": label, "reason": event.reason, "target": event.target}

    return await _post(request, parse_click, note, on_card_action)
