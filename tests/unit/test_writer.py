"""Group commit (bot/writer.py): many items, one transaction, each answered after it;
a failing item fails alone; a failed COMMIT and lost races are run again; shutdown
answers what was queued. On both engines, with real rows."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import event, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from bot.writer import RETRIES, Closed, Writer
from storage.db import Database
from storage.models import InboxKey

AT = datetime(2026, 11, 23, 2, 0, tzinfo=UTC).replace(tzinfo=None)


@contextmanager
def commits(db: Database) -> Iterator[list[int]]:
    """Counts the COMMITs the engine runs while the block does."""
    seen: list[int] = []

    def count(_conn: Any) -> None:
        seen.append(1)

    event.listen(db.engine.sync_engine, "commit", count)
    try:
        yield seen
    finally:
        event.remove(db.engine.sync_engine, "commit", count)


class Keys:
    """A batch function that stores each item as an inbox key; 'poison' items raise."""

    def __init__(self) -> None:
        self.batches: list[list[str]] = []
        self.failures: dict[str, int] = {}  # item -> how many times it fails first

    async def __call__(self, session: AsyncSession, items: Sequence[str]) -> list[str]:
        self.batches.append(list(items))
        for item in items:
            if item.startswith("poison"):
                raise ValueError(f"{item} is bad")
            if self.failures.get(item, 0) > 0:
                self.failures[item] -= 1
                session.add(InboxKey(key="taken", source="t", received_at=AT))
                await session.flush()  # a unique key another writer took first
            session.add(InboxKey(key=item, source="t", received_at=AT))
        await session.flush()
        return [f"stored {item}" for item in items]


async def stored(db: Database) -> set[str]:
    async with db.read() as session:
        return set(await session.scalars(select(InboxKey.key)))


async def writing(db: Database, fn: Keys, *, max_batch: int = 200) -> Writer:
    writer = Writer(db, max_batch=max_batch)
    writer.register("key", fn)
    return writer


async def test_concurrent_items_share_fewer_transactions(db: Database) -> None:
    fn = Keys()
    writer = await writing(db, fn)
    items = [f"k{n}" for n in range(30)]
    with commits(db) as seen:
        results = await asyncio.gather(*(writer.submit("key", item) for item in items))
    await writer.close()
    assert results == [f"stored {item}" for item in items]
    assert len(seen) < len(items)
    assert sum(len(batch) for batch in fn.batches) == len(items)
    assert await stored(db) == set(items)


async def test_a_batch_never_exceeds_max_batch(db: Database) -> None:
    fn = Keys()
    writer = await writing(db, fn, max_batch=4)
    await asyncio.gather(*(writer.submit("key", f"k{n}") for n in range(10)))
    await writer.close()
    assert max(len(batch) for batch in fn.batches) == 4
    assert len(await stored(db)) == 10


async def test_a_poisoned_item_fails_alone_and_the_rest_commit(db: Database) -> None:
    fn = Keys()
    writer = await writing(db, fn)
    items = ["a", "b", "poison", "c"]
    results = await asyncio.gather(
        *(writer.submit("key", item) for item in items), return_exceptions=True
    )
    await writer.close()
    assert results[:2] == ["stored a", "stored b"] and results[3] == "stored c"
    assert isinstance(results[2], ValueError)
    assert fn.batches[0] == items, "tried together first"
    assert await stored(db) == {"a", "b", "c"}


async def test_a_lost_race_is_run_again_and_then_commits(db: Database) -> None:
    async with db.transaction() as session:
        session.add(InboxKey(key="taken", source="t", received_at=AT))
    fn = Keys()
    fn.failures = {"b": RETRIES - 1}
    writer = await writing(db, fn)
    results = await asyncio.gather(*(writer.submit("key", item) for item in "abc"))
    await writer.close()
    assert results == ["stored a", "stored b", "stored c"]
    assert await stored(db) == {"taken", "a", "b", "c"}


async def test_a_race_lost_every_time_fails_after_the_retries(db: Database) -> None:
    async with db.transaction() as session:
        session.add(InboxKey(key="taken", source="t", received_at=AT))
    fn = Keys()
    fn.failures = {"b": 100}
    writer = await writing(db, fn)
    results = await asyncio.gather(
        *(writer.submit("key", item) for item in "ab"), return_exceptions=True
    )
    await writer.close()
    assert results[0] == "stored a" and isinstance(results[1], IntegrityError)
    assert await stored(db) == {"taken", "a"}


async def test_a_failed_commit_is_run_again_item_by_item(db: Database) -> None:
    fn = Keys()
    writer = await writing(db, fn)
    failed: list[int] = []

    def fail_first(_conn: Any) -> None:
        if not failed:
            failed.append(1)
            raise RuntimeError("the disk went away during COMMIT")

    event.listen(db.engine.sync_engine, "commit", fail_first)
    try:
        results = await asyncio.gather(*(writer.submit("key", item) for item in "abc"))
    finally:
        event.remove(db.engine.sync_engine, "commit", fail_first)
    await writer.close()
    assert results == ["stored a", "stored b", "stored c"]
    assert fn.batches == [["a", "b", "c"], ["a"], ["b"], ["c"]]
    assert await stored(db) == {"a", "b", "c"}


async def test_a_fault_after_the_commit_answers_nobody_success(db: Database) -> None:
    """Like a crash between COMMIT and the acks: nobody hears 'done', the data stays."""
    fn = Keys()
    writer = await writing(db, fn)

    def crash(batch: Any) -> None:
        raise RuntimeError("process died after COMMIT")

    writer._acknowledge = crash  # type: ignore[method-assign]
    results = await asyncio.gather(
        *(writer.submit("key", item) for item in "ab"), return_exceptions=True
    )
    await writer.close()
    assert all(isinstance(r, RuntimeError) for r in results)
    assert await stored(db) == {"a", "b"}


async def test_shutdown_answers_what_was_queued_then_refuses(db: Database) -> None:
    fn = Keys()
    writer = await writing(db, fn)
    pending = [asyncio.ensure_future(writer.submit("key", item)) for item in "abc"]
    await asyncio.sleep(0)  # queued, not yet written
    await writer.close()
    assert [p.result() for p in pending] == ["stored a", "stored b", "stored c"]
    with pytest.raises(Closed):
        await writer.submit("key", "d")
    assert await stored(db) == {"a", "b", "c"}


async def test_kinds_are_batched_separately_in_one_transaction(db: Database) -> None:
    keys, others = Keys(), Keys()
    writer = Writer(db)
    writer.register("key", keys)
    writer.register("other", others)
    with commits(db) as seen:
        results = await asyncio.gather(
            writer.submit("key", "a"),
            writer.submit("other", "poison"),
            writer.submit("key", "b"),
            return_exceptions=True,
        )
    await writer.close()
    assert results[0] == "stored a" and results[2] == "stored b"
    assert isinstance(results[1], ValueError)
    assert keys.batches == [["a", "b"]] and len(seen) == 1
    assert await stored(db) == {"a", "b"}


async def test_an_unknown_kind_is_refused_at_once(db: Database) -> None:
    writer = Writer(db)
    with pytest.raises(KeyError):
        await writer.submit("nope", 1)


async def test_an_unavailable_database_fails_the_batch_at_once(db: Database) -> None:
    """Each item alone would wait out the same bound: all answer 503 in one go."""
    calls: list[list[str]] = []

    async def stalls(session: AsyncSession, items: Sequence[str]) -> list[str]:
        calls.append(list(items))
        raise TimeoutError("statement timeout")

    writer = Writer(db)
    writer.register("key", stalls)
    results = await asyncio.gather(
        *(writer.submit("key", item) for item in "abc"), return_exceptions=True
    )
    await writer.close()
    assert all(isinstance(r, TimeoutError) for r in results)
    assert calls == [["a", "b", "c"]], "not retried one by one"
    assert await stored(db) == set()


class Overlap(Keys):
    """Keys whose batches wait in their transaction until `gate` opens (by the test, or
    once `meet` batches are in at once), counting how many are in flight together."""

    def __init__(self, meet: int | None = None) -> None:
        super().__init__()
        self.now = self.most = 0
        self.meet = meet
        self.gate = asyncio.Event()
        self.entered = asyncio.Event()
        self.started: list[list[str]] = []

    async def __call__(self, session: AsyncSession, items: Sequence[str]) -> list[str]:
        self.started.append(list(items))
        self.now += 1
        self.most = max(self.most, self.now)
        self.entered.set()
        if self.meet is not None and self.now >= self.meet:
            self.gate.set()
        try:
            await asyncio.wait_for(self.gate.wait(), timeout=30)
            return await super().__call__(session, items)
        finally:
            self.now -= 1


async def test_a_second_batch_starts_only_behind_a_full_one(db: Database) -> None:
    """Less than a batch queued: one transaction at a time takes all of it, so batches
    stay large (concurrent ones only wait for each other's row locks)."""
    fn = Overlap()
    writer = Writer(db, max_batch=50, concurrency=4)
    writer.register("key", fn)
    first = asyncio.ensure_future(writer.submit("key", "k0"))
    await fn.entered.wait()  # k0's batch is in its transaction
    rest = [f"k{n}" for n in range(1, 30)]
    pending = [asyncio.ensure_future(writer.submit("key", item)) for item in rest]
    await asyncio.sleep(0)  # all of them queued behind it
    fn.gate.set()
    await asyncio.gather(first, *pending)
    await writer.close()
    assert fn.most == 1
    assert fn.batches == [["k0"], rest]
    assert len(await stored(db)) == 30


async def test_a_backlog_of_full_batches_runs_them_side_by_side(db: Database) -> None:
    """Three lanes meet in their transactions (SQLite: one); shutting down meanwhile
    still answers every item, the lanes' included."""
    lanes = 1 if db.is_sqlite else 3
    fn = Overlap(meet=lanes)
    writer = Writer(db, max_batch=4, concurrency=3)
    writer.register("key", fn)
    items = [f"k{n}" for n in range(16)]
    pending = [asyncio.ensure_future(writer.submit("key", item)) for item in items]
    await asyncio.sleep(0)  # queued; the first batches start
    await writer.close()
    assert [p.result() for p in pending] == [f"stored {item}" for item in items]
    # In order of arrival, four at a time (which starts first is the pool's to say).
    assert sorted(fn.started) == sorted(items[n : n + 4] for n in range(0, 16, 4))
    assert fn.most == lanes
    assert await stored(db) == set(items)
