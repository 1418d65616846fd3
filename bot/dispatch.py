"""Ack, then work: the edge hands neutral events here and answers the platform at once.

`accept` first records the event (storage/inbound.py), in a batch the writer
commits with whatever else arrived meanwhile (bot/writer.py), so an acknowledged
event survives a crash; then, after that commit, the handler runs in a tracked
task (never fire-and-forget). The handler's own transaction deletes the record; what
a crash, a failed handler or an unfinished shutdown leaves behind, `recover`
(ticked by the clock) runs again, with backoff, until it is handled or dead.

Events with a `batched` handler (chat texts, card clicks) are handled, once
recorded, by a second group-commit writer: whatever arrived meanwhile runs in ONE
transaction (handlers/inbox.py `once_each`), which deletes their records too, so
a burst costs two shared writes per batch, not one transaction per event (on SQLite
a handling batch is kept small: the acks wait for its write lock). One
that fails there fails alone (bot/writer.py); its record stays for `recover`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import timedelta
from typing import Any, TypeVar

from sqlalchemy.ext.asyncio import AsyncSession

from bot.events import Deferrable, decode, encode
from bot.writer import Closed, Writer
from handlers import notify
from handlers.context import Ctx
from handlers.inbox import Once, once_each
from handlers.people import holders
from storage import inbound

log = logging.getLogger(__name__)
E = TypeVar("E")
Handler = Callable[[E, Ctx], Awaitable[Any]]
Batched = Callable[[E, Ctx], Once]  # the event's work, for a batch's transaction

# The immediate task normally finishes within milliseconds; recovery waits this long.
GRACE = timedelta(seconds=30)
LEASE = timedelta(seconds=120)
MAX_ATTEMPTS = 8
INBOUND = "inbound"  # the writer's kind for recording acknowledged events
HANDLE = "inbound.handle"  # the handling writer's kind: recorded events, handled
# On SQLite a handling batch holds the one write lock the acks' recording waits for,
# and a click's decision is milliseconds of ORM work on a loop the edges share: 60
# clicks in one transaction held it 1.2-1.5 s, so the acks queued behind it had a p99
# of 1.4 s (p50 60 ms). Four at a time, the acks' p99 was 360 ms in the same harness
# (docs/performance.md, sixth pass). PostgreSQL records beside a handling batch.
SQLITE_HANDLING_BATCH = 4


class Dispatcher:
    def __init__(
        self,
        ctx: Ctx,
        handlers: Mapping[type, Handler[Any]],
        kick: Callable[[], None] | None = None,
        *,
        concurrency: int = 16,
        writer: Writer | None = None,
        batched: Mapping[type, Batched[Any]] | None = None,
    ) -> None:
        self.ctx = ctx
        self.writer = writer or Writer(ctx.db)
        self.writer.register(INBOUND, inbound.put_many)
        self.handlers = dict(handlers)
        self.batched = dict(batched or {})
        w = self.writer
        size = min(w.max_batch, SQLITE_HANDLING_BATCH) if ctx.db.is_sqlite else w.max_batch
        self.handling = Writer(ctx.db, max_batch=size, concurrency=w.concurrency, kick=kick)
        self.handling.register(HANDLE, self._handle_batch)
        self._tasks: set[asyncio.Task[Any]] = set()
        self._by_key: dict[str, asyncio.Task[Any]] = {}
        self._kick = kick
        # Bounds the handlers in flight: a burst must not exhaust the connection pool.
        self._slots = asyncio.Semaphore(concurrency)
        self.accepting = True

    async def run(self, handler: Handler[E], event: E) -> Any:
        """Run a handler now (for edges without a deadline) and wake the outbox."""
        try:
            async with self._slots:
                return await handler(event, self.ctx)
        finally:
            if self._kick is not None:
                self._kick()

    async def accept(self, event: Deferrable) -> bool:
        """Record `event` and start its handler; False once shutdown began.

        A redelivery of an event already recorded or handled is acknowledged and
        dropped here, before any task starts.
        """
        if not self.accepting:
            return False
        handler = self.handlers[type(event)]
        kind, payload = encode(event)
        received = inbound.Received(event.key, kind, payload, self.ctx.clock(), GRACE)
        try:
            fresh = await self.writer.submit(INBOUND, received)
        except Closed:
            return False
        if not fresh:
            log.info("redelivery of %s acknowledged and dropped", event.key)
            return True
        task = asyncio.get_running_loop().create_task(self._guarded(handler, event))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        self._by_key[event.key] = task
        task.add_done_callback(lambda _: self._by_key.pop(event.key, None))
        return True

    async def _handle_batch(self, session: AsyncSession, events: Sequence[Any]) -> list[Any]:
        """The handling writer's kind: each recorded event's work, once, in its batch."""
        jobs = [self.batched[type(event)](event, self.ctx) for event in events]
        return await once_each(session, self.ctx, jobs)

    async def settled(self, key: str, wait: float) -> bool:
        """Wait up to `wait` s for the handler `accept` started for `key`; False if it
        still runs. For edges whose answer shows the outcome (a DingTalk card callback
        answers with the card as the click left it)."""
        task = self._by_key.get(key)
        if task is None:
            return True
        done, _ = await asyncio.wait({task}, timeout=wait)
        return bool(done)

    async def _guarded(self, handler: Handler[E], event: E) -> None:
        try:
            if type(event) in self.batched:
                await self.handling.submit(HANDLE, event)
            else:
                await self.run(handler, event)
        except Exception:
            # The record stays; recover() runs it again after GRACE.
            log.exception(
                "handler %s failed for event %s", handler.__name__, getattr(event, "key", "?")
            )

    async def recover(self, limit: int = 50) -> int:
        """Run again the recorded events whose handler never committed; returns how many."""
        rows = await inbound.claim_due(self.ctx.db, self.ctx.clock(), limit, LEASE)
        for row in rows:
            try:
                event = decode(row.kind, row.payload)
                handler = self.handlers[type(event)]
            except (KeyError, TypeError) as exc:
                log.error("inbound %s cannot be decoded (%s); dead", row.key, exc)
                await self._give_up(row.key, repr(exc))
                continue
            log.warning("recovering inbound %s (attempt %d)", row.key, row.attempts)
            try:
                await self.run(handler, event)
            except Exception as exc:
                dead = row.attempts >= MAX_ATTEMPTS
                log.exception("recovery of %s failed%s", row.key, "; giving up" if dead else "")
                if dead:
                    await self._give_up(row.key, repr(exc))
                else:
                    retry_at = self.ctx.clock() + LEASE * row.attempts
                    await inbound.failed(self.ctx.db, row.key, repr(exc), retry_at=retry_at)
        return len(rows)

    async def _give_up(self, key: str, error: str) -> None:
        """Stop retrying an acknowledged event, and tell the admins it was not handled."""
        await inbound.failed(self.ctx.db, key, error, retry_at=None)
        async with self.ctx.db.transaction() as session:
            admins = await holders(session, "admin")
            text = f"⚠ 收到的消息 {key} 多次处理失败，已停止重试：{error[:200]}"
            await notify.tell(session, self.ctx, admins, text, alert=True)

    async def idle(self) -> None:
        """Wait until the work accepted so far has finished (tests, flushes)."""
        while self._tasks:
            await asyncio.wait(set(self._tasks))

    async def drain(self, grace: float = 10.0) -> None:
        """Stop intake and wait for the work already accepted.

        The writer commits and answers what is queued first (its handlers then start);
        whatever is still running after `grace` is recorded: the next start recovers it.
        """
        self.accepting = False
        await self.writer.close()
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=grace)
        await self.handling.close()
