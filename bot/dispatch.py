"""Ack, then work: the edge hands neutral events here and answers the platform at once.

Tasks are held in a set (never fire-and-forget), so shutdown can wait for them
and an exception is logged with the event key instead of vanishing.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from handlers.context import Ctx

log = logging.getLogger(__name__)
E = TypeVar("E")
Handler = Callable[[E, Ctx], Awaitable[Any]]


class Dispatcher:
    def __init__(self, ctx: Ctx, kick: Callable[[], None] | None = None) -> None:
        self.ctx = ctx
        self._tasks: set[asyncio.Task[Any]] = set()
        self._kick = kick
        self.accepting = True

    async def run(self, handler: Handler[E], event: E) -> Any:
        """Run a handler now (for edges without a deadline) and wake the outbox."""
        try:
            return await handler(event, self.ctx)
        finally:
            if self._kick is not None:
                self._kick()

    def submit(self, handler: Handler[E], event: E) -> bool:
        """Run a handler after the response has gone; False once shutdown began."""
        if not self.accepting:
            return False
        task = asyncio.get_running_loop().create_task(self._guarded(handler, event))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return True

    async def _guarded(self, handler: Handler[E], event: E) -> None:
        try:
            await self.run(handler, event)
        except Exception:
            log.exception(
                "handler %s failed for event %s", handler.__name__, getattr(event, "key", "?")
            )

    async def idle(self) -> None:
        """Wait until the work submitted so far has finished (tests, flushes)."""
        while self._tasks:
            await asyncio.wait(set(self._tasks))

    async def drain(self, grace: float = 10.0) -> None:
        """Stop intake and wait for the work already accepted."""
        self.accepting = False
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=grace)
