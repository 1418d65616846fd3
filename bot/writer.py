"""Group commit: the edges' writes share one transaction, and each is acked after it.

An edge calls `await writer.submit(kind, item)` and gets that item's result (or
its exception) only once the transaction holding its effects has committed
(DESIGN.md §6: acknowledged only after committed). A writer task takes whatever
queued while the previous batch committed (up to `max_batch`; no artificial
delay), opens ONE transaction, and hands each kind's items to the kind's batch
function inside a SAVEPOINT. When that raises, the savepoint is rolled back and
the items run one by one, each in its own savepoint, so a failing item fails
alone and the rest still commit. A transaction that fails as a whole (its
COMMIT) is run again item by item, each in a transaction of its own, unless
the database is unavailable (storage/db.py `is_unavailable`: unreachable, too
slow, locked): then every item fails at once, so the edges answer 503 within
the bound instead of waiting it out once per item. Races the database reports
(a deadlock, a unique key another transaction took first, an optimistic-lock
conflict) send the item round again, as handlers/inbox.py `once` does, so an
acknowledged event is never dropped.

SQLite has one writer: one batch at a time, which takes the write lock once.
On PostgreSQL a second batch (up to `concurrency` at a time) starts only behind a
full one, for a backlog one batch cannot take. Concurrent batches of new cases take
turns for the day's case-number counter row anyway, so starting one per wake-up
only cut batches small: measured with 64 connections on two workers, batches of 7
instead of 30 cost twice the CPU per webhook and put p99 at 1.6-2.9 s
(docs/performance.md, sixth pass).
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm.exc import StaleDataError

from storage.db import Database, allow_savepoints, is_retryable, is_unavailable

log = logging.getLogger(__name__)

BatchFn = Callable[[AsyncSession, Sequence[Any]], Awaitable[Sequence[Any]]]
RETRIES = 3  # attempts per item for a lost race, as `once` makes


class Closed(Exception):
    """The writer is shutting down: the edge answers 503 and the sender retries."""


def _lost_race(exc: BaseException) -> bool:
    """A failure that running the item again on fresh data cures."""
    if isinstance(exc, IntegrityError | StaleDataError):
        return True
    return isinstance(exc, DBAPIError) and is_retryable(exc)


@dataclass(eq=False)
class _Item:
    kind: str
    value: Any
    future: asyncio.Future[Any]
    attempts: int = 0
    outcome: tuple[bool, Any] | None = field(default=None)  # (ok, result or exception)


class Writer:
    """One per process (bot/app.py); `register` every kind before the first `submit`."""

    def __init__(
        self,
        db: Database,
        *,
        max_batch: int = 200,
        concurrency: int = 4,
        kick: Callable[[], None] | None = None,
    ) -> None:
        if max_batch < 1 or concurrency < 1:
            raise ValueError("max_batch and concurrency must be at least 1")
        self.db = db
        self.max_batch = max_batch
        self.concurrency = 1 if db.is_sqlite else concurrency
        self._kick = kick
        self._fns: dict[str, BatchFn] = {}
        self._queue: asyncio.Queue[_Item] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        self._flying: set[asyncio.Task[None]] = set()  # the extra lanes' batches
        self.accepting = True

    @property
    def queued(self) -> int:
        """Items waiting for the next batch (a gauge; tests hold a batch with it)."""
        return self._queue.qsize()

    def register(self, kind: str, fn: BatchFn) -> None:
        """`fn(session, items) -> results`, one per item in order, in the caller's
        transaction; it raises when any item fails (the items are then run alone)."""
        self._fns[kind] = fn

    async def submit(self, kind: str, item: Any) -> Any:
        """Queue `item`; its result once committed. Raises Closed after shutdown began."""
        if not self.accepting:
            raise Closed("shutting down")
        if kind not in self._fns:
            raise KeyError(f"no batch function registered for {kind!r}")
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._loop())
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait(_Item(kind, item, future))
        return await future

    async def close(self) -> None:
        """Stop accepting, commit and answer what is queued, then stop the tasks."""
        self.accepting = False
        if self._task is None:
            return
        await self._queue.join()  # every batch answered, the lanes' too: they end with it
        self._task.cancel()
        await asyncio.gather(self._task, *self._flying, return_exceptions=True)
        self._task = None

    async def _loop(self) -> None:
        while True:
            batch = [await self._queue.get()]
            while len(batch) < self.max_batch and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            # Every batch runs as a task, so one handed to a lane is scheduled before the
            # newer one the loop then waits for (neither waits for the other's start:
            # concurrent batches are ordered only by the row locks they take).
            task = asyncio.get_running_loop().create_task(self._run(batch))
            backlog = len(batch) == self.max_batch and not self._queue.empty()
            if backlog and len(self._flying) + 1 < self.concurrency:
                self._flying.add(task)
                task.add_done_callback(self._flying.discard)
                continue
            await task

    async def _run(self, batch: list[_Item]) -> None:
        try:
            await self._write(batch)
        except Exception as exc:  # noqa: BLE001 - nobody may hang on a lost answer
            log.exception("writer: a batch of %d could not be answered", len(batch))
            for item in batch:
                if not item.future.done():
                    item.future.set_exception(exc)
        finally:
            for _ in batch:
                self._queue.task_done()

    async def _write(self, batch: list[_Item]) -> None:
        try:
            await self._transaction(batch)
        except Exception as exc:  # noqa: BLE001 - the COMMIT or the connection failed
            if len(batch) == 1 or is_unavailable(exc):
                for item in batch:
                    item.outcome = (False, exc)
            else:
                log.warning("writer: a batch of %d failed (%r); one by one", len(batch), exc)
                for item in batch:
                    await self._write([item])
                return
        else:
            if self._kick is not None:
                self._kick()
        self._acknowledge(batch)

    async def _transaction(self, batch: list[_Item]) -> None:
        """Run `batch` in one transaction; outcomes are recorded, not yet answered."""
        groups: dict[str, list[_Item]] = defaultdict(list)
        for item in batch:
            item.attempts += 1
            item.outcome = None
            groups[item.kind].append(item)
        async with self.db.transaction() as session:
            await allow_savepoints(session)
            for kind, items in groups.items():
                fn = self._fns[kind]
                try:
                    async with session.begin_nested():
                        results = await fn(session, [item.value for item in items])
                        if len(results) != len(items):
                            raise RuntimeError(f"{kind}: {len(results)} results for {len(items)}")
                except Exception as exc:  # noqa: BLE001 - one of them failed: find which
                    if is_unavailable(exc):
                        raise  # each alone would wait out the same bound: answer 503 now
                    if len(items) == 1:
                        items[0].outcome = (False, exc)
                        continue
                    log.info("writer: %s x%d failed (%r); one by one", kind, len(items), exc)
                    for item in items:
                        item.outcome = await self._alone(session, fn, item)
                else:
                    for item, result in zip(items, results, strict=True):
                        item.outcome = (True, result)

    async def _alone(self, session: AsyncSession, fn: BatchFn, item: _Item) -> tuple[bool, Any]:
        try:
            async with session.begin_nested():
                (result,) = await fn(session, [item.value])
        except Exception as exc:  # noqa: BLE001 - this item's own failure, answered to it
            return False, exc
        return True, result

    def _acknowledge(self, batch: list[_Item]) -> None:
        """Answer each item after the commit; a lost race goes round again instead."""
        for item in batch:
            if item.future.done() or item.outcome is None:
                continue
            ok, value = item.outcome
            if not ok and _lost_race(value) and item.attempts < RETRIES:
                log.info("writer: %s item lost a race (%r); again", item.kind, value)
                self._queue.put_nowait(item)  # before the loop marks this round done
                continue
            if ok:
                item.future.set_result(value)
            else:
                item.future.set_exception(value)
