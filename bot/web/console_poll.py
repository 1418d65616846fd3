"""`GET /console/api/messages`: what the page polls every second where server push
(console_stream.py) is not available; the stream's catch-up runs the same query.

A poll returns rows newer than the client's last id, plus rows at or below it
that changed, or first became visible, since the client's cursor. The second
part matters twice. A card is updated in place (who decided, and when). And on
PostgreSQL an id is handed out at insert but seen only at commit, so id 12 can
be visible before id 11: a poll that only asked for `id > last` would skip 11
for good. The cursor is the newest `updated_at` the client has seen, and the
server looks back a margin before it, since a slower transaction can commit an
older timestamp after a poll. Each row carries `rev` (a hash of its body): the
page inserts a row it does not have, re-renders one whose rev changed, and
ignores the rest.
"""

from __future__ import annotations

import hashlib
import json
from datetime import datetime, timedelta
from typing import Any

from aiohttp import web
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from bot.appkeys import CTX
from bot.platforms.console import is_member
from bot.web.auth import acting_as, console_member
from handlers.context import Ctx
from storage.models import ConsoleMessage
from storage.sql_hints import selective

PAGE_LIMIT = 200
LOOKBACK = timedelta(seconds=10)
MAX_ID = 2**63 - 1  # BIGINT: a larger `after` cannot name a row, and would not bind


class BadPoll(ValueError):
    """A query parameter the poll cannot use; the message is shown to the person."""


def dumps(data: Any) -> str:
    return json.dumps(data, ensure_ascii=False)


def error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status, dumps=dumps)


def view(ctx: Ctx, row: ConsoleMessage) -> dict[str, Any]:
    """A row as the page renders it; `rev` changes whenever what it shows changes."""
    body = dict(row.body)
    body.pop("outbox_id", None)
    rev = hashlib.sha256(dumps(body).encode()).hexdigest()[:12]
    local = ctx.local(row.created_at)
    return {
        "id": row.id,
        "direction": row.direction,
        **body,
        "rev": rev,
        "time": local.strftime("%m-%d %H:%M"),
    }


def parse_after(raw: str) -> int:
    try:
        after = int(raw or "0")
    except ValueError:
        raise BadPoll("after 必须是整数") from None
    if not 0 <= after <= MAX_ID:
        raise BadPoll("after 超出范围")
    return after


def parse_since(raw: str) -> datetime | None:
    """The client's cursor: naive UTC, as we sent it, and far enough from year 1 to look back."""
    if not raw:
        return None
    try:
        cursor = datetime.fromisoformat(raw).replace(tzinfo=None)
        cursor - LOOKBACK  # noqa: B018 - fails here, not in the query, when out of range
    except (ValueError, OverflowError):
        raise BadPoll("since 格式不正确") from None
    return cursor


async def poll_rows(
    session: AsyncSession, user: str, after: int, since: datetime | None
) -> tuple[list[ConsoleMessage], list[ConsoleMessage]]:
    """The rows after `after` (the newest page on a first load), and the rows at or
    below it changed since `since` (minus the look-back), both oldest first.

    The first come in id order from `ix_console_user`; the second are found through
    `ix_console_changed` and ordered here: they are the few rows touched in the last
    seconds, where an id-ordered walk would read the member's whole chat every poll.
    """
    mine = ConsoleMessage.user_id == user
    if after == 0:
        # First load: the newest page of the chat, oldest first.
        query = select(ConsoleMessage).where(mine).order_by(ConsoleMessage.id.desc())
        fresh = list(await session.scalars(query.limit(PAGE_LIMIT)))[::-1]
    else:
        query = select(ConsoleMessage).where(mine, ConsoleMessage.id > after)
        fresh = list(await session.scalars(query.order_by(ConsoleMessage.id).limit(PAGE_LIMIT)))
    changed: list[ConsoleMessage] = []
    if since is not None and after > 0:
        query = select(ConsoleMessage).where(
            mine,
            selective(ConsoleMessage.updated_at >= since - LOOKBACK),
            ConsoleMessage.id <= after,
        )
        changed = sorted(await session.scalars(query), key=lambda row: row.id)
    return fresh, changed


async def messages(request: web.Request) -> web.Response:
    """`?user=&after=&since=` -> new rows, late or changed rows, and the next cursor.

    A signed-in member reads only their own chat (403 for anyone else's)."""
    me = await console_member(request)
    ctx = request.app[CTX]
    user = request.query.get("user", "")
    acting_as(me, user)
    try:
        after = parse_after(request.query.get("after", ""))
        since = parse_since(request.query.get("since", ""))
    except BadPoll as exc:
        return error(400, str(exc))
    if not user or not await is_member(ctx.db, user):
        return error(400, "未知成员或参数不正确")
    async with ctx.db.read() as session:
        fresh, changed = await poll_rows(session, user, after, since)
    cursor = max(
        [r.updated_at for r in (*fresh, *changed)] + ([since] if since else []), default=None
    )
    return web.json_response(
        {
            "messages": [view(ctx, r) for r in fresh],
            "updated": [view(ctx, r) for r in changed],
            "last_id": fresh[-1].id if fresh else after,
            "more": after > 0 and len(fresh) == PAGE_LIMIT,
            "cursor": cursor.isoformat() if cursor else "",
        },
        dumps=dumps,
    )
