"""The console's change feed: one task per process finds the console rows that changed
and hands them to the page streams watching those members (console_stream.py).

It wakes when this process commits a console row (`kick`, which
bot/platforms/console.py calls after each commit) and at least every `interval`
for the rows other replicas wrote. Each look reads the watched members' rows
whose `updated_at` is at most LOOKBACK before the newest it has seen, the poll's
margin and for the poll's reason (console_poll.py: on PostgreSQL a row becomes
visible at commit, possibly after a newer one), and publishes every (id, rev) it
has not published yet.

Each change gets a sequence number and stays in a short journal, so a page that
reconnects to this process with its Last-Event-ID gets exactly what it missed. A
member's changes are journaled only while someone watches them; a member stays
watched for LINGER after their last stream ended, so a reconnect finds the
journal whole. Anything the journal cannot vouch for (another replica, a
restart, a number it has moved past) makes the stream catch up from the table
instead, as a poll would.

A subscriber's queue is bounded: one that falls `max_queue` changes behind (a
stalled connection) is dropped, and its page reconnects and catches up.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, select

from bot.web.console_poll import LOOKBACK
from storage.db import Database
from storage.models import ConsoleMessage
from storage.sql_hints import selective

log = logging.getLogger(__name__)

LINGER = 60.0  # seconds a member stays watched after their last stream ended


@dataclass(frozen=True, slots=True)
class Change:
    seq: int
    user: str
    row: dict[str, Any]  # as the page renders it (console_poll.view)
    updated_at: datetime


class Subscriber:
    """One stream's inbox: changes for `user`, then None when the stream must end."""

    def __init__(self, user: str, max_queue: int) -> None:
        self.user = user
        self.max_queue = max_queue
        self.queue: asyncio.Queue[Change | None] = asyncio.Queue()
        self.dropped = False

    def offer(self, change: Change) -> None:
        if self.dropped:
            return
        if self.queue.qsize() >= self.max_queue:
            log.warning("console stream for %s fell %d changes behind: dropped", self.user,
                        self.max_queue)  # fmt: skip
            self.dropped = True
            self.end()
            return
        self.queue.put_nowait(change)

    def end(self) -> None:
        """Empty the queue and leave only the end marker (what is lost, the page resumes)."""
        while not self.queue.empty():
            self.queue.get_nowait()
        self.queue.put_nowait(None)


class FeedClosed(RuntimeError):
    """The server is shutting down: no new streams."""


class ConsoleFeed:
    def __init__(
        self,
        db: Database,
        view: Callable[[ConsoleMessage], dict[str, Any]],
        *,
        interval: float = 1.0,
        heartbeat: float = 15.0,
        max_queue: int = 256,
        journal: int = 2000,
    ) -> None:
        self.db = db
        self.view = view
        self.interval = interval
        self.heartbeat = heartbeat
        self.max_queue = max_queue
        self.epoch = secrets.token_hex(4)
        self.seq = 0
        self._journal: deque[Change] = deque(maxlen=journal)
        self._subs: dict[str, set[Subscriber]] = {}
        self._watch: dict[str, int] = {}  # member -> seq when their continuous watch began
        self._linger: dict[str, float] = {}  # member -> monotonic time their last stream ended
        self._seen: dict[int, tuple[str, datetime]] = {}  # row id -> (rev, updated_at)
        self._newest: datetime | None = None
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closed = False
        self._failing = False

    def kick(self) -> None:
        """A console row was committed in this process: look now, not at the next tick."""
        self._wake.set()

    def subscribe(
        self, user: str, epoch: str = "", seq: int = -1
    ) -> tuple[Subscriber, list[Change] | None, int]:
        """A new stream for `user`: its subscriber, the journal's changes after `seq`
        (None when the journal cannot vouch for them: catch up from the table), and
        the sequence number the stream starts at. One synchronous step, so nothing
        falls between the replay and the queue."""
        if self._closed:
            raise FeedClosed()
        replay = self._replay(user, epoch, seq)
        sub = Subscriber(user, self.max_queue)
        self._subs.setdefault(user, set()).add(sub)
        self._linger.pop(user, None)
        self._watch.setdefault(user, self.seq)
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run(), name="console-feed")
        self.kick()
        return sub, replay, self.seq

    def unsubscribe(self, sub: Subscriber) -> None:
        group = self._subs.get(sub.user)
        if group is None:
            return
        group.discard(sub)
        if not group:
            del self._subs[sub.user]
            self._linger[sub.user] = time.monotonic()

    def streams(self, user: str) -> int:
        """How many streams watch `user` now."""
        return len(self._subs.get(user, ()))

    def _replay(self, user: str, epoch: str, seq: int) -> list[Change] | None:
        if epoch != self.epoch or not 0 <= seq <= self.seq:
            return None
        if self._watch.get(user, seq + 1) > seq:
            return None  # the member was not watched all along since `seq`
        if seq < self.seq and (not self._journal or self._journal[0].seq > seq + 1):
            return None  # the journal has moved past it
        return [c for c in self._journal if c.seq > seq and c.user == user]

    async def close(self) -> None:
        """Shutdown: end every stream (so the server need not wait for them) and the task."""
        self._closed = True
        for group in self._subs.values():
            for sub in group:
                sub.end()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        while True:
            self._expire()
            if not self._watch:
                self._forget()  # nobody watches: the journal stops being whole
                return
            try:
                await self._scan()
                if self._failing:
                    log.info("console feed: reading the database again")
                self._failing = False
            except Exception as exc:  # the database is away: look again next time, say it once
                if not self._failing:
                    log.warning("console feed cannot read the database: %s", exc)
                self._failing = True
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.interval)
            self._wake.clear()

    def _expire(self) -> None:
        cutoff = time.monotonic() - LINGER
        for user, left in list(self._linger.items()):
            if left <= cutoff:
                del self._linger[user]
                self._watch.pop(user, None)

    def _forget(self) -> None:
        self.epoch = secrets.token_hex(4)
        self._journal.clear()
        self._seen.clear()
        self._newest = None

    async def _scan(self) -> None:
        users = sorted(self._watch)
        mine = ConsoleMessage.user_id.in_(users)
        async with self.db.read() as session:
            if self._newest is None:
                top = select(func.max(ConsoleMessage.updated_at)).where(mine)
                self._newest = await session.scalar(top)
            query = select(ConsoleMessage).where(mine)
            if self._newest is not None:
                floor = self._newest - LOOKBACK
                query = query.where(selective(ConsoleMessage.updated_at >= floor))
            rows = list(await session.scalars(query.order_by(ConsoleMessage.id)))
        for row in rows:
            shown = self.view(row)
            if self._seen.get(row.id, ("",))[0] != shown["rev"]:
                self._publish(Change(self.seq + 1, row.user_id, shown, row.updated_at))
            self._seen[row.id] = (shown["rev"], row.updated_at)
            if self._newest is None or row.updated_at > self._newest:
                self._newest = row.updated_at
        if self._newest is not None:
            floor = self._newest - LOOKBACK
            for row_id, (_, at) in list(self._seen.items()):
                if at < floor:
                    del self._seen[row_id]

    def _publish(self, change: Change) -> None:
        self.seq = change.seq
        self._journal.append(change)
        for sub in self._subs.get(change.user, ()):
            sub.offer(change)
