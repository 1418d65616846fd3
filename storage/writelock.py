"""The SQLite writer's turns: FIFO within a lane, round-robin across lanes.

SQLite has one writer, so every write transaction of the process queues for it
(storage/db.py). A plain FIFO lock lets a flood of one kind of writer (intake, a
webhook burst) put every other writer (the outbox's claim and outcome, the clock's
timer batch) behind the whole queue, however long. Here each kind of writer has a
lane: waiters of one lane are served in arrival order, and when the lock is free
the next lane with a waiter gets it, in turn. A writer that asks once per round
thus waits for at most one transaction of each other lane, and the busiest lane
still gets every turn no one else asks for: no lane can starve another.

The lock is handed over, never released to whoever runs first, so a newcomer
cannot barge past a woken waiter. A holder must not await network I/O: every
turn it holds is a turn all the lanes wait for.
"""

from __future__ import annotations

import asyncio
from collections import deque

DEFAULT_LANE = "default"


class WriteLock:
    """An asyncio lock whose waiters queue per lane (see the module docstring)."""

    def __init__(self) -> None:
        self._held = False
        self._lanes: dict[str, deque[asyncio.Future[None]]] = {}
        self._last: str | None = None
        self.turns: dict[str, int] = {}  # turns granted per lane (metrics, tests)

    @property
    def locked(self) -> bool:
        return self._held

    async def acquire(self, lane: str = DEFAULT_LANE) -> None:
        """Wait for `lane`'s turn; the caller must `release()` (try/finally)."""
        queue = self._lanes.setdefault(lane, deque())
        if not self._held:
            self._grant(lane)
            return
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        queue.append(waiter)
        try:
            await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self.release()  # handed the lock just as we were cancelled: pass it on
            elif waiter in queue:
                queue.remove(waiter)
            raise

    def _grant(self, lane: str) -> None:
        self._held = True
        self._last = lane
        self.turns[lane] = self.turns.get(lane, 0) + 1

    def release(self) -> None:
        """Hand the writer to the next lane with a waiter, in turn (or free it)."""
        names = list(self._lanes)
        start = names.index(self._last) + 1 if self._last in self._lanes else 0
        for name in names[start:] + names[:start]:
            queue = self._lanes[name]
            while queue:
                waiter = queue.popleft()
                if not waiter.done():
                    self._grant(name)
                    waiter.set_result(None)
                    return
        self._held = False
