"""Channel pollers on the clock: one at a time per shop, with a stored cursor.

A poller (the 抖店 reconciliation poll here; the Taobao TMC and JD pollers fit
the same shape) reads what changed since its cursor and turns it into
`ChannelNotice`s. The runner gives each poller its turn every `every`: it takes
the poller's database lease (storage/leases.py) so that with several replicas
exactly one polls a shop, hands the notices to the dispatcher (stored before
anything else happens, like a push), and only then stores the new cursor, so a
crash re-polls the window instead of skipping it. The windows overlap by the
poller's own margin; a notice seen twice has the same key and is dropped by the
inbox, so the overlap costs nothing twice.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime, timedelta
from typing import Any, Protocol

from bot.events import ChannelNotice
from storage import channel_state, leases
from storage.db import Database

log = logging.getLogger(__name__)

Accept = Callable[[ChannelNotice], Awaitable[bool]]
TICK_SECONDS = 5.0


class Poller(Protocol):
    name: str  # "<channel>:<shop>", the lease's and the cursor's name
    every: timedelta

    async def poll(
        self, cursor: dict[str, Any] | None, now: datetime
    ) -> tuple[list[ChannelNotice], dict[str, Any]]:
        """The notices since `cursor` and the cursor to store once they are."""


def holder_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


class PollRunner:
    """Runs each poller when due; `run_once` is what the loop (and tests) call."""

    def __init__(
        self,
        db: Database,
        pollers: Sequence[Poller],
        accept: Accept,
        clock: Callable[[], datetime],
        holder: str | None = None,
    ) -> None:
        self.db = db
        self.pollers = list(pollers)
        self.accept = accept
        self.clock = clock
        self.holder = holder or holder_id()
        self._next: dict[str, datetime] = {}
        self._task: asyncio.Task[None] | None = None

    async def run_once(self) -> int:
        """Poll every poller that is due and whose lease this process holds; notices stored."""
        stored = 0
        for poller in self.pollers:
            now = self.clock()
            if self._next.get(poller.name, now) > now:
                continue
            self._next[poller.name] = now + poller.every
            if not await leases.acquire(
                self.db, f"poll:{poller.name}", self.holder, poller.every * 2, now
            ):
                continue
            try:
                stored += await self._poll(poller, now)
            except Exception:
                log.exception(
                    "poller %s failed; its window is polled again next time", poller.name
                )
        return stored

    async def _poll(self, poller: Poller, now: datetime) -> int:
        name = f"cursor:{poller.name}"
        notices, cursor = await poller.poll(await channel_state.get(self.db, name), now)
        results = await asyncio.gather(*(self.accept(n) for n in notices))
        if not all(results):
            return 0  # shutting down: the cursor stays, the window is polled again
        await channel_state.put(self.db, name, cursor, now)
        if notices:
            log.info("poller %s: %d change(s) stored", poller.name, len(notices))
        return len(notices)

    def start(self) -> None:
        if self.pollers and self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._loop())

    async def _loop(self) -> None:
        while True:
            await self.run_once()
            await asyncio.sleep(TICK_SECONDS)

    async def stop(self) -> None:
        """Stop the loop and give the leases up, so another replica takes over at once."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            for poller in self.pollers:
                await leases.release(self.db, f"poll:{poller.name}", self.holder)
