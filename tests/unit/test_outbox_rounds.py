"""Outbox rounds in batches (issue 7, item 3) on both engines: one transaction for a
round's outcomes, a crash before it redelivers, and intake flooding the writer does
not hold the outbox back."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import Any

import pytest
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncSession

from bot.outbox import OutboxWorker, PermanentError
from bot.outbox_limits import RateLimit, Window
from bot.outbox_outcomes import HOOK_CHUNK
from bot.settings import OutboxSettings
from storage import outbox
from storage.db import Database, next_counter_stmt
from storage.models import OutboxMessage, Sequence
from tests.support import FakeClock
from tests.unit.test_outbox import Recorder, rows


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@contextmanager
def commits(db: Database) -> Iterator[list[int]]:
    """Counts the write transactions committed on `db` inside the block."""
    seen: list[int] = []

    def on_commit(_conn: Any) -> None:
        seen.append(1)

    event.listen(db.engine.sync_engine, "commit", on_commit)
    try:
        yield seen
    finally:
        event.remove(db.engine.sync_engine, "commit", on_commit)


async def add(
    db: Database, clock: FakeClock, specs: list[tuple[str, str, str | None]]
) -> list[int]:
    """(kind, destination, case_id) rows, due now."""
    async with db.transaction() as session:
        msgs = [
            outbox.enqueue(session, kind=kind, destination=dest, payload={}, now=clock(),
                           case_id=case)
            for kind, dest, case in specs
        ]  # fmt: skip
    return [m.id for m in msgs]


class Refuses(Recorder):
    async def __call__(self, msg: OutboxMessage) -> dict[str, Any]:
        self.calls.append(msg.id)
        raise PermanentError("HTTP 400")


async def test_a_round_records_every_outcome_in_one_transaction(
    db: Database, clock: FakeClock
) -> None:
    sent = await add(db, clock, [("text", f"console:u{i}", f"RC-{i}") for i in range(6)])
    failing = await add(db, clock, [("flaky", "console:x", "RC-7")])
    refused = await add(db, clock, [("bad", "console:y", "RC-8")])
    limited = await add(db, clock, [("text", "wecom-robot:ops", f"RC-9{i}") for i in range(3)])
    done: list[int] = []
    dead: list[int] = []

    async def on_done(session: AsyncSession, msg: OutboxMessage, _: dict[str, Any]) -> None:
        done.append(msg.id)
        outbox.enqueue(session, kind="note", destination="x:done", payload={}, now=clock())

    async def on_dead(session: AsyncSession, msg: OutboxMessage) -> None:
        dead.append(msg.id)

    perform = Recorder()
    worker = OutboxWorker(
        db,
        OutboxSettings(),
        {"text": perform, "flaky": Recorder(fail=1), "bad": Refuses()},
        clock=clock,
        on_done=on_done,
        on_dead=on_dead,
        rate_limits={"wecom-robot:": RateLimit((Window(2, 60),))},
    )
    with commits(db) as seen:
        assert await worker.run_once() == len(sent) + 2 + 2
    assert len(seen) == 2  # the claim, and every outcome of the round together
    assert sorted(done) == sorted(sent + limited[:2]) and dead == refused
    by_id = {r.id: r for r in await rows(db)}
    assert {by_id[i].status for i in sent + limited[:2]} == {"sent"}
    assert (by_id[failing[0]].status, by_id[failing[0]].attempts) == ("pending", 1)
    assert by_id[refused[0]].status == "dead"
    # The third robot message waits for the window, untouched, counted against the two
    # sent earlier in this very round though they were not written yet.
    deferred = by_id[limited[2]]
    assert (deferred.status, deferred.attempts, deferred.locked_until) == ("pending", 0, None)
    assert deferred.next_at > outbox.naive(clock())
    assert sum(1 for r in by_id.values() if r.kind == "note") == len(done)


async def test_a_case_row_behind_one_sent_this_round_waits_for_the_next(
    db: Database, clock: FakeClock
) -> None:
    # A card update reads the handle its send's on_done stores: it must not run before
    # that outcome is written, so it goes in the next round.
    ids = await add(db, clock, [("text", "console:u1", "RC-1")] * 3)
    perform = Recorder()
    worker = OutboxWorker(db, OutboxSettings(), {"text": perform}, clock=clock)
    assert await worker.run_once() == 1
    assert [r.attempts for r in await rows(db)] == [1, 0, 0]
    await worker.drain()
    assert perform.calls == ids


async def test_a_crash_before_the_outcomes_are_written_redelivers(
    db: Database, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    ids = await add(db, clock, [("text", f"console:u{i}", f"RC-{i}") for i in range(3)])
    perform, done = Recorder(), []

    async def on_done(_: AsyncSession, msg: OutboxMessage, __: dict[str, Any]) -> None:
        done.append(msg.id)

    real = outbox.record

    async def crash(*args: Any) -> set[int]:
        raise ConnectionError("the process died here")

    settings = OutboxSettings(lease_seconds=60)
    worker = OutboxWorker(db, settings, {"text": perform}, clock=clock, on_done=on_done)
    monkeypatch.setattr(outbox, "record", crash)
    await worker.run_once()
    assert sorted(perform.calls) == ids and done == []
    assert {(r.status, r.attempts) for r in await rows(db)} == {("pending", 0)}
    monkeypatch.setattr(outbox, "record", real)
    clock.advance(30)
    assert await worker.run_once() == 0  # still leased: nobody performs them twice at once
    clock.advance(31)  # the lease ran out: performed again, recorded once
    await worker.drain()
    assert sorted(perform.calls) == sorted(ids * 2)
    assert sorted(done) == ids
    # the unrecorded round counts as an attempt: the second went out as a retry
    assert {(r.status, r.attempts) for r in await rows(db)} == {("sent", 2)}


class Watched(Database):
    """Records, for each outbox write, how many intake turns went before it."""

    def __init__(self, url: str) -> None:
        super().__init__(url)
        self.waits: list[int] = []

    @asynccontextmanager
    async def transaction(self, lane: str = "default") -> AsyncIterator[AsyncSession]:
        before = self.write_lock.turns.get("default", 0)
        async with super().transaction(lane) as session:
            if lane == outbox.OUTBOX_LANE:
                self.waits.append(self.write_lock.turns.get("default", 0) - before)
            yield session


async def test_intake_flooding_the_writer_does_not_hold_the_outbox_back(
    db: Database, clock: FakeClock
) -> None:
    n, batch, flooders = 120, 50, 20
    ids = await add(db, clock, [("text", f"console:u{i % 7}", f"RC-{i}") for i in range(n)])
    watched = Watched(db.url)
    stop, flooding = asyncio.Event(), asyncio.Event()
    flood_commits = 0

    async def intake() -> None:  # small write transactions, back to back
        nonlocal flood_commits
        while not stop.is_set():
            async with watched.transaction() as session:
                await session.execute(next_counter_stmt(watched, Sequence, "flood"))
            flood_commits += 1
            if flood_commits >= flooders:
                flooding.set()
            await asyncio.sleep(0)

    rounds = 0

    class Counting(OutboxWorker):
        async def run_once(self) -> int:
            nonlocal rounds
            rounds += 1
            return await super().run_once()

    perform = Recorder()
    worker = Counting(watched, OutboxSettings(batch=batch), {"text": perform}, clock=clock)
    tasks = [asyncio.create_task(intake()) for _ in range(flooders)]
    try:
        await flooding.wait()  # the flood is on before the outbox starts
        while await worker.run_once():
            pass
    finally:
        stop.set()
        await asyncio.gather(*tasks)
        await watched.dispose()
    assert sorted(perform.calls) == ids  # every row, once
    # A full batch, then on SQLite a claim twice its size (a backlog) takes the other
    # 70 (PostgreSQL: 50 and 20), then one round finds nothing.
    assert rounds == (3 if db.is_sqlite else 4)
    assert {r.status for r in await rows(db) if r.id in set(ids)} == {"sent"}
    if db.is_sqlite:  # the writer is shared: at most one intake write before each turn
        assert watched.waits and max(watched.waits) <= 1


class Overlap(Recorder):
    """Counts the sends in flight at once; each waits (bounded) for `expect` of them."""

    def __init__(self, expect: int, wait: float = 0.5) -> None:
        super().__init__()
        self.expect, self.wait, self.now, self.most = expect, wait, 0, 0
        self.full = asyncio.Event()

    async def __call__(self, msg: OutboxMessage) -> dict[str, Any]:
        self.calls.append(msg.id)
        self.now += 1
        self.most = max(self.most, self.now)
        if self.now >= self.expect:
            self.full.set()
        try:
            await asyncio.wait_for(self.full.wait(), self.wait)
        except TimeoutError:
            pass
        finally:
            self.now -= 1
        return {}


async def test_a_shop_channel_sends_its_cases_concurrently_a_chat_keeps_its_order(
    db: Database, clock: FakeClock
) -> None:
    """Under a `by_case` prefix (a shop channel's API) rows of different cases do not
    wait for each other's round trip, and one case's rows still leave in the order
    written; a person's chat reads as a conversation, so its rows of different cases
    go one at a time in the order written, and so do a rate-limited destination's
    (its limits count what was just sent)."""
    channel = await add(db, clock, [("refund", "channel:generic", f"RC-{i}") for i in range(4)])
    later = await add(db, clock, [("refund", "channel:generic", "RC-0")])
    perform = Overlap(expect=4)
    worker = OutboxWorker(
        db, OutboxSettings(), {"refund": perform}, clock=clock, by_case=("channel:",)
    )
    assert await worker.run_once() == 4
    assert perform.most == 4 and sorted(perform.calls) == channel
    await worker.drain()
    assert perform.calls == [*perform.calls[:4], *later]  # RC-0's second, a round later

    chat = await add(db, clock, [("text", "console:王组长", f"RC-{i}") for i in range(2)])
    chat += await add(db, clock, [("text", "console:王组长", None)])  # a reply to a click
    perform = Overlap(expect=2, wait=0.2)  # one after the other: each waits out the 0.2 s
    worker = OutboxWorker(db, OutboxSettings(), {"text": perform}, clock=clock,
                          by_case=("channel:",))  # fmt: skip
    assert await worker.run_once() == 3
    assert perform.most == 1 and perform.calls == chat

    limited = await add(db, clock, [("text", "wecom:u1", f"RC-{i}") for i in range(3)])
    perform = Overlap(expect=2, wait=0.2)
    worker = OutboxWorker(
        db,
        OutboxSettings(),
        {"text": perform},
        clock=clock,
        rate_limits={"wecom:": RateLimit((Window(30, 60),))},
        by_case=("wecom:",),  # a limit wins
    )
    assert await worker.run_once() == 3
    assert perform.most == 1 and perform.calls == limited


async def test_a_backlog_s_rounds_claim_more_until_one_comes_up_short(
    db: Database, clock: FakeClock
) -> None:
    """A round costs two turns at SQLite's writer whatever its size: while each round
    claims all it asked for and most of it goes out, the next asks for twice as many
    (up to eight batches), so the outbox keeps up with an intake writing faster than
    one batch a round. A short round, or one that mostly failed, goes back to one."""
    ids = await add(db, clock, [("text", "channel:generic", f"RC-{i}") for i in range(100)])
    claims: list[int] = []

    class Claims(OutboxWorker):
        async def _round(self) -> tuple[int, int]:
            claims.append(self._claim)
            return await super()._round()

    perform = Recorder()
    worker = Claims(db, OutboxSettings(batch=5), {"text": perform}, clock=clock)
    await worker.drain()
    if db.is_sqlite:
        assert claims == [5, 10, 20, 40, 40, 5]  # 5+10+20+40 = 75, 25 of 40, none left
    else:  # no writer to take turns at, and replicas share the queue: one batch a round
        assert claims == [5] * 21
    assert sorted(perform.calls) == ids

    await add(db, clock, [("flaky", "channel:generic", f"RC-F{i}") for i in range(10)])
    claims.clear()
    worker.performers["flaky"] = Recorder(fail=5)  # the far side refuses a whole round
    await worker.run_once()
    assert not worker.backlogged  # failures keep the clock's gap, too
    await worker.run_once()  # the other five go out
    assert claims == [5, 5] and worker.backlogged


async def test_a_slow_far_side_s_backlog_claims_no_more(db: Database, clock: FakeClock) -> None:
    """A backlog whose round took long (a slow far side) goes on without the gap but
    claims no more: a bigger claim would outrun its leases."""
    await add(db, clock, [("text", "channel:generic", f"RC-{i}") for i in range(10)])
    settings = OutboxSettings(batch=5, lease_seconds=1)
    worker = OutboxWorker(
        db, settings, {"text": Recorder(pause=0.2)}, clock=clock, by_case=("channel:",)
    )
    assert await worker.run_once() == 5  # five cases at once, 0.2 s: past 1/8 of the lease
    assert worker.backlogged and worker._claim == 5


async def test_a_big_round_s_hooks_flush_in_chunks_and_one_failing_fails_alone(
    db: Database, clock: FakeClock
) -> None:
    """A backlog's round of hundreds: its hooks flush HOOK_CHUNK at a time, each chunk
    in a savepoint (one flush of them all held the event loop 20-40 ms), and a hook
    that raises rolls back alone, in whichever chunk."""
    n = 2 * HOOK_CHUNK + 6
    ids = await add(db, clock, [("text", "channel:generic", f"RC-{i:03}") for i in range(n)])
    poisoned = ids[HOOK_CHUNK + 3]  # hooks run in case order: in the second chunk
    statements: list[str] = []

    def seen(_conn: Any, _cursor: Any, sql: str, *_: Any) -> None:
        statements.append(sql.split()[0].upper())

    async def on_done(session: AsyncSession, msg: OutboxMessage, _: dict[str, Any]) -> None:
        outbox.enqueue(session, kind="note", destination="x:y", payload={"of": msg.id},
                       now=clock())  # fmt: skip
        await session.flush()
        if msg.id == poisoned:
            raise RuntimeError("card table locked")

    worker = OutboxWorker(
        db, OutboxSettings(batch=n), {"text": Recorder()}, clock=clock, on_done=on_done
    )
    event.listen(db.engine.sync_engine, "before_cursor_execute", seen)
    try:
        assert await worker.run_once() == n
    finally:
        event.remove(db.engine.sync_engine, "before_cursor_execute", seen)
    # Three chunks; the second failed and ran again hook by hook.
    assert statements.count("SAVEPOINT") == 3 + HOOK_CHUNK
    got = await rows(db)
    assert {r.status for r in got if r.id in set(ids)} == {"sent"}
    notes = sorted(r.payload["of"] for r in got if r.kind == "note")
    assert notes == [i for i in ids if i != poisoned]
