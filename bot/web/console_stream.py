"""`GET /console/api/stream?user=&after=&since=`: the console's server push (SSE).

The page opens an EventSource per member; each event carries what a poll answer
does (`messages`, `updated`, `last_id`, `cursor`, console_poll.py), so the page
applies both the same way. The stream first catches up, as a poll from
`after`/`since` would, then forwards what the change feed (console_feed.py)
finds for that member, skipping any (id, rev) it already sent.

Every event's id is `<feed epoch>_<seq>_<last id>_<cursor>`; a browser that
reconnects sends it back as Last-Event-ID. On the same process the feed's
journal replays exactly what was missed; elsewhere the last id and cursor make
the table catch-up a poll would run. A comment line every `heartbeat` seconds
keeps proxies from closing an idle stream and finds a vanished client. On
shutdown the feed ends every stream, so the server does not wait on them.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from aiohttp import web

from bot.appkeys import CTX
from bot.platforms.console import is_member
from bot.web.auth import acting_as, console_member
from bot.web.console_feed import Change, ConsoleFeed, FeedClosed, Subscriber
from bot.web.console_pages import NOSNIFF
from bot.web.console_poll import (
    PAGE_LIMIT,
    BadPoll,
    dumps,
    error,
    parse_after,
    parse_since,
    poll_rows,
    view,
)

FEED: web.AppKey[ConsoleFeed] = web.AppKey("console_feed", ConsoleFeed)
RETRY_MS = 2000
SENT_MAX = 4096  # (id, rev) pairs a stream remembers to skip repeats


@dataclass(frozen=True, slots=True)
class Resume:
    epoch: str = ""
    seq: int = -1
    after: int = 0
    since: datetime | None = None


def resume_point(last_event_id: str, query: dict[str, str]) -> Resume:
    """Where the stream starts: the Last-Event-ID a reconnecting browser sends, else
    the page's `after`/`since` (its state after polling, or a first load)."""
    if not last_event_id:
        return Resume(after=parse_after(query.get("after", "")),
                      since=parse_since(query.get("since", "")))  # fmt: skip
    parts = last_event_id.split("_")
    if len(parts) != 4 or not parts[1].isdigit():
        raise BadPoll("Last-Event-ID 格式不正确")
    epoch, seq, after, since = parts
    return Resume(epoch, int(seq), parse_after(after), parse_since(since))


@dataclass(slots=True)
class Stream:
    """One open event stream and what it has told its page."""

    response: web.StreamResponse
    epoch: str
    seq: int
    last_id: int
    cursor: datetime | None
    sent: dict[int, str] = field(default_factory=dict)

    async def send(self, rows: list[tuple[dict[str, Any], datetime]], seq: int) -> None:
        """One event: the rows the page has not got, as a poll answer, with the new id."""
        fresh: list[dict[str, Any]] = []
        updated: list[dict[str, Any]] = []
        for row, at in rows:
            if self.sent.get(row["id"]) == row["rev"]:
                continue
            self.sent[row["id"]] = row["rev"]
            (fresh if row["id"] > self.last_id else updated).append(row)
            self.last_id = max(self.last_id, row["id"])
            self.cursor = at if self.cursor is None else max(self.cursor, at)
        while len(self.sent) > SENT_MAX:
            del self.sent[next(iter(self.sent))]
        self.seq = max(self.seq, seq)
        cursor = self.cursor.isoformat() if self.cursor else ""
        data = {"messages": fresh, "updated": updated, "last_id": self.last_id, "cursor": cursor}
        event_id = f"{self.epoch}_{self.seq}_{self.last_id}_{cursor}"
        await self.response.write(f"id: {event_id}\ndata: {dumps(data)}\n\n".encode())

    async def ping(self) -> None:
        await self.response.write(b": ping\n\n")


def setup(app: web.Application) -> None:
    """The route, and the feed's end on shutdown: before the server waits on handlers."""
    app.router.add_get("/console/api/stream", stream)

    async def close(app: web.Application) -> None:
        await app[FEED].close()

    app.on_shutdown.append(close)


async def stream(request: web.Request) -> web.StreamResponse:
    me = await console_member(request)  # 401/403 before anything streams
    ctx = request.app[CTX]
    user = request.query.get("user", "")
    acting_as(me, user)
    try:
        start = resume_point(request.headers.get("Last-Event-ID", ""), dict(request.query))
    except BadPoll as exc:
        return error(400, str(exc))
    if not user or not await is_member(ctx.db, user):
        return error(400, "未知成员或参数不正确")
    feed = request.app[FEED]
    try:
        sub, replay, seq = feed.subscribe(user, start.epoch, start.seq)
    except FeedClosed:
        return error(503, "服务正在停止，请稍后重试")
    response = web.StreamResponse(
        headers={
            "Content-Type": "text/event-stream; charset=utf-8",
            "Cache-Control": "no-cache",
            "X-Accel-Buffering": "no",  # nginx: pass each event on at once
            **NOSNIFF,
        }
    )
    try:
        await response.prepare(request)
        await response.write(f"retry: {RETRY_MS}\n\n".encode())
        out = Stream(response, feed.epoch, seq, start.after, start.since)
        if replay is None:
            await _catch_up(request, out, user, seq)
        elif replay:
            await out.send([(c.row, c.updated_at) for c in replay], replay[-1].seq)
        await _forward(out, sub, feed)
    except ConnectionResetError:
        pass  # the page went away; it reconnects with its Last-Event-ID
    finally:
        feed.unsubscribe(sub)
    return response


async def _catch_up(request: web.Request, out: Stream, user: str, seq: int) -> None:
    """What a poll from the stream's start would return, page by page."""
    ctx = request.app[CTX]
    while True:
        after = out.last_id
        async with ctx.db.read() as session:
            fresh, changed = await poll_rows(session, user, after, out.cursor)
        rows = [(view(ctx, r), r.updated_at) for r in (*fresh, *changed)]
        await out.send(rows, seq)
        if after == 0 or len(fresh) < PAGE_LIMIT:
            return


async def _forward(out: Stream, sub: Subscriber, feed: ConsoleFeed) -> None:
    """The feed's changes as they come, several at once if they queued; a ping when idle."""
    while True:
        try:
            first = await asyncio.wait_for(sub.queue.get(), feed.heartbeat)
        except TimeoutError:
            await out.ping()
            continue
        batch: list[Change | None] = [first]
        with contextlib.suppress(asyncio.QueueEmpty):
            while True:
                batch.append(sub.queue.get_nowait())
        changes = [c for c in batch if c is not None]
        if changes:
            await out.send([(c.row, c.updated_at) for c in changes], changes[-1].seq)
        if len(changes) < len(batch):
            return  # dropped, or the server is stopping
