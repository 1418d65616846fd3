"""The daily digest: at `[digest] time` the previous day's figures go to the managers.

Once a day across replicas and restarts: the run claims the key `digest:<local
date>` (an inbox key, INSERT … ON CONFLICT DO NOTHING) in the same transaction that
writes the outbox rows, so of two replicas, or of a server restarted after sending,
exactly one writes them; a server that was down at the configured time sends when it
comes back the same day, and a day missed entirely is not sent the next day.

Each recipient gets a markdown row and, where the platform takes images and a CJK
font is installed, an image row whose chart is drawn at delivery
(bot/digest_chart.py) from the figures in the row, so a retry sends the same bytes.
The outbox does the sending: an IM outage delays the digest, loses nothing, and a
row delivered is never delivered again.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from datetime import date, time
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from bot import digest_chart
from bot.events import Sender
from handlers.command_grammar import Call
from handlers.context import Ctx
from handlers.digest_text import Digest, build, markdown
from handlers.people import address, holders, receives
from storage import outbox
from storage.db import dialect_insert
from storage.models import InboxKey

log = logging.getLogger(__name__)

MARKDOWN_KIND = "digest.markdown"
IMAGE_KIND = "digest.image"
KEY_PREFIX = "digest:"
# Platforms whose digest performer can send a picture (bot/digest_delivery.py).
IMAGE_PLATFORMS = frozenset({"wecom", "wecom-robot", "dingtalk"})
MEMBER_PLATFORMS = ("console", "wecom", "dingtalk")
ROBOTS = (("wecom-robot", "wecom_robots"), ("dingtalk-robot", "dingtalk_robots"))


def at_time(value: str) -> time:
    hour, minute = value.split(":")
    return time(int(hour), int(minute))


async def recipients(session: AsyncSession, ctx: Ctx) -> list[Sender]:
    """Every member holding a digest role, on each platform they receive on, then the
    configured group robots; each destination once."""
    found: dict[str, Sender] = {}
    for role in ctx.settings.digest.roles:
        for member in await holders(session, role):
            for platform in MEMBER_PLATFORMS:
                user = address(member, platform)
                if platform in ctx.platforms and user and receives(member, platform):
                    found.setdefault(f"{platform}:{user}", Sender(platform, user))
    for platform, key in ROBOTS:
        if platform in ctx.platforms:
            for name in getattr(ctx.settings.digest, key):
                found.setdefault(f"{platform}:{name}", Sender(platform, name))
    return list(found.values())


@dataclass(frozen=True)
class Prepared:
    """A digest and its outbox rows, (kind, destination, payload), ready to write."""

    digest: Digest
    to: list[Sender]
    rows: list[tuple[str, str, dict[str, Any]]]


async def prepare(ctx: Ctx, to: list[Sender] | None = None) -> Prepared:
    """Yesterday's digest for `to` (default: every recipient), read and laid out
    outside any write transaction: the figures scan a month of cases and the first
    font lookup may run fc-match, neither of which may hold the SQLite writer."""
    async with ctx.db.read() as session:
        digest = await build(session, ctx, ctx.now())
        if to is None:
            to = await recipients(session, ctx)
    if not to:
        log.warning(
            "digest %s: nobody to send it to: no member of %s is on an enabled platform, "
            "and [digest] names no robot",
            digest.day,
            ", ".join(ctx.settings.digest.roles),
        )
    link = ctx.settings.server.public_url.rstrip("/")
    payload: dict[str, Any] = {
        "title": f"售后日报 {digest.day.isoformat()}",
        "markdown": markdown(digest, f"{link}/dashboard" if link else ""),
    }
    chart = ctx.settings.digest.chart and any(s.platform in IMAGE_PLATFORMS for s in to)
    if chart and await asyncio.to_thread(digest_chart.find_font) is None:
        log.warning(
            "digest %s: no CJK font found (install fonts-noto-cjk: make browser-deps); "
            "sending the markdown without its chart",
            digest.day,
        )
        chart = False
    rows: list[tuple[str, str, dict[str, Any]]] = []
    for sender in to:
        destination = f"{sender.platform}:{sender.user_id}"
        rows.append((MARKDOWN_KIND, destination, payload))
        if chart and sender.platform in IMAGE_PLATFORMS:
            rows.append((IMAGE_KIND, destination, {"chart": digest.chart_data()}))
    return Prepared(digest, to, rows)


def put(session: AsyncSession, ctx: Ctx, prepared: Prepared) -> int:
    """The prepared rows into the outbox, in the caller's transaction; how many."""
    for kind, destination, payload in prepared.rows:
        outbox.enqueue(session, kind=kind, destination=destination, payload=payload, now=ctx.now())
    log.info(
        "digest %s: %d rows for %d recipients",
        prepared.digest.day,
        len(prepared.rows),
        len(prepared.to),
    )
    return len(prepared.rows)


async def claim(session: AsyncSession, ctx: Ctx, day: date) -> bool:
    """Take today's digest key; False when a replica (or an earlier run) has it."""
    table = InboxKey.__table__
    stmt = (
        dialect_insert(ctx.db, table)
        .values(key=f"{KEY_PREFIX}{day.isoformat()}", source="digest", received_at=ctx.now())
        .on_conflict_do_nothing(index_elements=[table.c.key])
        .returning(table.c.key)
    )
    return (await session.execute(stmt)).scalar_one_or_none() is not None


@dataclass
class DailyDigest:
    """The clock's digest job: `tick()` sends today's digest once it is due.

    `done` remembers the last local day this process saw claimed, so after that the
    tick costs no query until tomorrow."""

    ctx: Ctx
    done: date | None = field(default=None)

    async def tick(self) -> bool:
        """Send the digest if it is due and nobody has; True when this call sent it."""
        settings = self.ctx.settings.digest
        now = self.ctx.now()
        local = self.ctx.local(now)
        if not settings.enabled or self.done == local.date():
            return False
        if local.time().replace(tzinfo=None) < at_time(settings.time):
            return False
        async with self.ctx.db.read() as session:  # sent already (a restart, a replica)
            taken = await session.get(InboxKey, f"{KEY_PREFIX}{local.date().isoformat()}")
        if taken is not None:
            self.done = local.date()
            return False
        prepared = await prepare(self.ctx)
        async with self.ctx.db.transaction() as session:
            won = await claim(session, self.ctx, local.date())
            if won:
                put(session, self.ctx, prepared)
        self.done = local.date()
        return won


async def command(call: Call) -> None:
    """/日报 [/digest]: today's digest to the member who asked, in the chat they asked in."""
    await send_now(call.session, call.ctx, call.event.sender)


async def send_now(session: AsyncSession, ctx: Ctx, to: Sender) -> Digest:
    """/日报: the digest to whoever asked, now (claims nothing: the daily run still
    goes to everyone at its time)."""
    prepared = await prepare(ctx, [to])
    put(session, ctx, prepared)
    return prepared.digest
