"""The outbox and its worker on both engines, with a hand-advanced clock and fake performers."""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import event, select
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession

from bot.metrics import Metrics
from bot.outbox import OutboxWorker, PermanentError, RetryableError
from bot.outbox_limits import RateLimit, Window
from bot.outbox_retry import RetrySchedule
from bot.settings import OutboxSettings
from storage import outbox, outbox_dead
from storage.db import Database
from storage.models import OutboxMessage
from tests.conftest import ONLY_PG

DEST = "wecom-robot:ops"
CASE = "RC-250301-0001"
DELIVERIES = "returnhub_outbox_deliveries_total"


class FakeClock:
    def __init__(self) -> None:
        self.now = datetime(2025, 3, 1, 9, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)

    def set(self, now: datetime) -> None:
        self.now = now


class MaxRng(random.Random):
    def random(self) -> float:  # jitter at the top of its range, to see the cap itself
        return 0.999999


class LowRng(random.Random):
    def random(self) -> float:  # jitter at the bottom: the quickest retries allowed
        return 0.0


class Recorder:
    """A performer that fails the first `fail` calls with `error`, then succeeds."""

    def __init__(self, fail: int = 0, error: Exception | None = None, pause: float = 0) -> None:
        self.fail, self.pause = fail, pause
        self.error = error or RetryableError("502 from far side")
        self.calls: list[int] = []

    async def __call__(self, msg: OutboxMessage) -> dict[str, Any]:
        self.calls.append(msg.id)
        await asyncio.sleep(self.pause)  # lets a concurrent replica interleave
        if len(self.calls) <= self.fail:
            raise self.error
        return {"ref": f"handle-{msg.id}"}


async def add(
    db: Database, clock: FakeClock, n: int = 1, *, kind: str = "text", dest: str = DEST
) -> list[int]:
    async with db.transaction() as session:
        msgs = [
            outbox.enqueue(
                session, kind=kind, destination=dest, payload={"n": i}, now=clock(), case_id=CASE
            )
            for i in range(n)
        ]
    return [m.id for m in msgs]


async def rows(db: Database) -> list[OutboxMessage]:
    stmt = select(OutboxMessage).order_by(OutboxMessage.id)
    async with db.read() as session:
        return list((await session.scalars(stmt)).all())


def sample(metrics: Metrics, name: str, **labels: str) -> float:
    return metrics.registry.get_sample_value(name, labels) or 0.0


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


async def test_delivered_once_and_on_done_sees_the_result(db: Database, clock: FakeClock) -> None:
    [msg_id] = await add(db, clock)
    perform, done, metrics = Recorder(), [], Metrics()

    async def on_done(_: AsyncSession, msg: OutboxMessage, result: dict[str, Any]) -> None:
        done.append((msg.id, msg.status, result))

    worker = OutboxWorker(
        db, OutboxSettings(), {"text": perform}, clock=clock, metrics=metrics, on_done=on_done
    )
    assert await worker.run_once() == 1
    await worker.drain()
    assert await worker.run_once() == 0
    assert perform.calls == [msg_id]
    assert done == [(msg_id, "sent", {"ref": f"handle-{msg_id}"})]
    [row] = await rows(db)
    assert (row.status, row.attempts, row.locked_until) == ("sent", 1, None)
    assert row.sent_at == outbox.naive(clock())
    assert sample(metrics, DELIVERIES, kind="text", result="sent") == 1


async def test_rolled_back_enqueue_never_leaves(db: Database, clock: FakeClock) -> None:
    with pytest.raises(RuntimeError):
        async with db.transaction() as session:
            outbox.enqueue(session, kind="text", destination=DEST, payload={}, now=clock())
            raise RuntimeError("the state change failed")
    assert await rows(db) == []


async def test_transient_failures_back_off_then_succeed(db: Database, clock: FakeClock) -> None:
    [msg_id] = await add(db, clock)
    perform = Recorder(fail=3)
    worker = OutboxWorker(db, OutboxSettings(), {"text": perform}, clock=clock, rng=MaxRng())
    delays = []
    for _ in range(3):
        assert await worker.run_once() == 1
        [row] = await rows(db)
        assert (row.status, row.locked_until) == ("pending", None)
        assert "502 from far side" in row.last_error
        delays.append((row.next_at - outbox.naive(clock())).total_seconds())
        assert await worker.run_once() == 0  # backing off: not due yet
        clock.now = row.next_at.replace(tzinfo=UTC)
    assert await worker.run_once() == 1
    [row] = await rows(db)
    assert (row.status, row.attempts) == ("sent", 4)
    assert perform.calls == [msg_id] * 4
    # min(max_delay, base * 2**attempts) at the top of the jitter range: 2, 4, 8 s
    assert delays == pytest.approx([2, 4, 8], rel=1e-3)


def test_the_schedule_doubles_from_the_base_up_to_the_cap_with_equal_jitter() -> None:
    schedule = RetrySchedule(OutboxSettings(), rng=random.Random(42))  # 2 s base, 600 s cap
    for failures in range(1, 20):
        nominal = min(600.0, 2.0 * 2 ** (failures - 1))
        seen = [schedule.delay(failures).total_seconds() for _ in range(200)]
        assert all(nominal / 2 <= s <= nominal for s in seen)
        assert max(seen) - min(seen) > nominal / 4  # jitter spreads over the range
    top = RetrySchedule(OutboxSettings(), rng=MaxRng())
    assert [top.delay(n).total_seconds() for n in (1, 2, 3, 9, 10, 500)] == pytest.approx(
        [2, 4, 8, 512, 600, 600], rel=1e-3
    )


def test_the_schedule_outlasts_a_day_and_gives_up_by_time() -> None:
    settings = OutboxSettings(base_delay_seconds=2.0, max_delay_seconds=600.0)
    low = RetrySchedule(settings, rng=LowRng())  # the shortest waits jitter allows
    start = datetime(2025, 3, 1, 9, 0, tzinfo=UTC)
    now, since, failures = start, None, 0
    while True:
        failures += 1
        retry = low.after_failure(now, failures, since)
        assert retry.failing_since == start  # the clock runs from the first failure
        if retry.at is None:
            break
        assert now < retry.at <= start + timedelta(hours=24)
        now, since = retry.at, retry.failing_since
    # Not a minute of quick attempts: retried until the full day had passed (the last
    # retry lands on the deadline itself), every wait at most the 10-minute cap.
    assert now == start + timedelta(hours=24)
    assert 24 * 60 / 10 < failures < 24 * 60 / 5 + 20
    # A row failing for the first time gets the whole period, however old it is.
    fresh = low.after_failure(start + timedelta(days=3), 1, None)
    assert fresh.at == start + timedelta(days=3, seconds=1)


async def test_dead_letter_after_the_give_up_time(db: Database, clock: FakeClock) -> None:
    [msg_id] = await add(db, clock)
    perform, dead, metrics = Recorder(fail=10**6), [], Metrics()

    async def on_dead(_: AsyncSession, msg: OutboxMessage) -> None:
        dead.append((msg.id, msg.status))

    settings = OutboxSettings(give_up_after_hours=1.0)
    worker = OutboxWorker(
        db, settings, {"text": perform}, clock=clock, metrics=metrics, on_dead=on_dead
    )
    first = clock()
    while clock() < first + timedelta(minutes=59, seconds=30):
        await worker.run_once()
        clock.advance(30)
    [row] = await rows(db)
    assert (row.status, dead) == ("pending", [])  # a quick run of attempts gives nothing up
    assert row.failing_since == outbox.naive(first)
    clock.set(first + timedelta(hours=1))
    await worker.run_once()
    [row] = await rows(db)
    assert dead == [(msg_id, "dead")]
    assert (row.status, row.attempts) == ("dead", len(perform.calls))
    assert "502 from far side" in row.last_error and "gave up" in row.last_error
    assert sample(metrics, DELIVERIES, kind="text", result="dead") == 1
    assert sample(metrics, DELIVERIES, kind="text", result="retry") == len(perform.calls) - 1
    async with db.read() as session:
        assert await outbox_dead.depth(session) == {"pending": 0, "dead": 1}


async def test_a_revived_row_gets_a_fresh_retry_period(db: Database, clock: FakeClock) -> None:
    await add(db, clock)
    worker = OutboxWorker(
        db, OutboxSettings(give_up_after_hours=1.0), {"text": Recorder(fail=10**6)}, clock=clock
    )
    for _ in range(30):
        await worker.run_once()
        clock.advance(600)
    [row] = await rows(db)
    assert row.status == "dead"
    async with db.transaction() as session:
        assert await outbox_dead.revive(session, [row.id], now=clock()) == 1
    await worker.run_once()
    [row] = await rows(db)
    assert (row.status, row.attempts) == ("pending", 1)
    assert row.failing_since == outbox.naive(clock())


async def test_permanent_error_is_dead_at_once(db: Database, clock: FakeClock) -> None:
    await add(db, clock)
    perform, dead = Recorder(fail=1, error=PermanentError("40003 invalid userid")), []

    async def on_dead(_: AsyncSession, msg: OutboxMessage) -> None:
        dead.append(msg.id)

    worker = OutboxWorker(db, OutboxSettings(), {"text": perform}, clock=clock, on_dead=on_dead)
    await worker.drain()
    clock.advance(3600)
    await worker.drain()
    [row] = await rows(db)
    assert (row.status, row.attempts, len(perform.calls), dead) == ("dead", 1, 1, [row.id])
    assert row.last_error == "PermanentError: 40003 invalid userid"


async def test_unknown_kind_is_dead_and_raising_hooks_are_only_logged(
    db: Database, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    await add(db, clock, kind="fax")
    [ok_id] = await add(db, clock)

    async def on_dead(_: AsyncSession, msg: OutboxMessage) -> None:
        raise RuntimeError("alert channel down")

    async def on_done(_: AsyncSession, msg: OutboxMessage, result: dict[str, Any]) -> None:
        raise RuntimeError("card table locked")

    perform = Recorder()
    worker = OutboxWorker(
        db, OutboxSettings(), {"text": perform}, clock=clock, on_dead=on_dead, on_done=on_done
    )
    with caplog.at_level(logging.ERROR, logger="bot.outbox"):
        await worker.drain()
        clock.advance(3600)
        await worker.drain()
    fax, text = await rows(db)
    assert (fax.status, fax.last_error) == ("dead", "no performer for kind 'fax'")
    assert (text.status, perform.calls) == ("sent", [ok_id])  # on_done failing changes nothing
    messages = [r.getMessage() for r in caplog.records]
    assert any("on_dead failed" in m for m in messages)
    assert any("on_done failed" in m for m in messages)
    assert any(CASE in m and str(fax.id) in m and "dead" in m for m in messages)


async def test_unexpected_error_is_retried_with_traceback(
    db: Database, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    await add(db, clock)
    worker = OutboxWorker(
        db, OutboxSettings(), {"text": Recorder(fail=1, error=KeyError("x"))}, clock=clock
    )
    with caplog.at_level(logging.ERROR, logger="bot.outbox"):
        await worker.run_once()
    [row] = await rows(db)
    assert (row.status, row.attempts, row.last_error) == ("pending", 1, "KeyError: 'x'")
    assert any(r.exc_info for r in caplog.records)


async def test_rate_limit_defers_without_burning_attempts(db: Database, clock: FakeClock) -> None:
    ids = await add(db, clock, 5)
    other = await add(db, clock, 3, dest="dingtalk:chat-1")
    perform = Recorder()
    worker = OutboxWorker(
        db,
        OutboxSettings(),
        {"text": perform},
        clock=clock,
        rate_limits={"wecom-robot:": RateLimit((Window(2, 60),))},
    )
    await worker.drain()
    assert sorted(perform.calls) == sorted(ids[:2] + other)  # unlisted prefix: unlimited
    deferred = [r for r in await rows(db) if r.status == "pending"]
    assert [r.id for r in deferred] == ids[2:]
    assert all(r.attempts == 0 for r in deferred)
    # The first waits for the window to reopen; the rest of its case waits behind it.
    assert deferred[0].next_at > outbox.naive(clock())

    clock.advance(30)
    assert await worker.run_once() == 0
    clock.advance(31)
    await worker.drain()
    assert sorted(perform.calls) == sorted(ids[:4] + other)
    clock.advance(61)
    await worker.drain()
    assert sorted(perform.calls) == sorted(ids + other)
    assert {(r.status, r.attempts) for r in await rows(db)} == {("sent", 1)}


async def test_lease_expiry_redelivers_after_a_crash(db: Database, clock: FakeClock) -> None:
    [msg_id] = await add(db, clock)
    # A worker claims the row, performs it, and dies before recording the outcome.
    [stale] = await outbox.claim_due(db, clock(), 10, lease_seconds=60)
    clock.advance(30)
    assert await outbox.claim_due(db, clock(), 10, lease_seconds=60) == []

    clock.advance(31)  # the lease ran out: another replica re-claims, and crashes too
    await outbox.claim_due(db, clock(), 10, lease_seconds=60)
    assert stale.locked_until is not None
    late = outbox.Outcome(stale.id, stale.locked_until, outbox.RETRY, {
        "next_at": clock(), "last_error": "late", "failing_since": clock()
    })  # fmt: skip
    async with db.transaction() as session:  # the first worker's late mark is fenced off
        assert await outbox.record(session, db, [late]) == set()

    clock.advance(61)
    perform = Recorder()
    worker = OutboxWorker(db, OutboxSettings(lease_seconds=60), {"text": perform}, clock=clock)
    assert await worker.run_once() == 1
    assert perform.calls == [msg_id]
    [row] = await rows(db)
    # Each claim whose outcome nobody recorded counts as an attempt: the delivery
    # went out as a retry (a text performer then asks for WeCom's duplicate check).
    assert (row.status, row.attempts, row.last_error) == ("sent", 3, "")


@ONLY_PG
async def test_two_pg_workers_deliver_each_row_once(db: Database, clock: FakeClock) -> None:
    ids: list[int] = []
    for d in range(10):
        ids += await add(db, clock, 20, dest=f"dingtalk:chat-{d}")
    second = Database(db.url)  # another replica: its own engine and connections
    seen = [Recorder(pause=0.002), Recorder(pause=0.002)]
    try:
        workers = [
            OutboxWorker(base, OutboxSettings(batch=10), {"text": perform}, clock=clock)
            for base, perform in zip((db, second), seen, strict=True)
        ]
        await asyncio.gather(*(w.drain(max_rounds=1000) for w in workers))
    finally:
        await second.dispose()
    delivered = seen[0].calls + seen[1].calls
    assert len(delivered) == len(set(delivered)) == 200
    assert sorted(delivered) == sorted(ids)
    assert seen[0].calls and seen[1].calls, "both replicas should have taken part"
    assert {r.status for r in await rows(db)} == {"sent"}


class PausedClaims(Database):
    """A replica whose claim transaction stops before its commit until `go` is set."""

    def __init__(self, url: str) -> None:
        super().__init__(url)
        self.inside, self.go = asyncio.Event(), asyncio.Event()

    @asynccontextmanager
    async def transaction(self, lane: str = "default") -> AsyncIterator[AsyncSession]:
        async with super().transaction(lane) as session:
            yield session
            self.inside.set()
            await self.go.wait()


@ONLY_PG
async def test_a_row_is_not_claimed_past_an_elder_another_replica_is_claiming(
    db: Database, clock: FakeClock
) -> None:
    # Replica A's claim holds the elder (its batch ended there) and has not committed
    # its lease yet; replica B must not take the younger row of the same case and
    # destination past it.
    elder, younger = await add(db, clock, 2)
    replica_a = PausedClaims(db.url)
    try:
        claim_a = asyncio.create_task(outbox.claim_due(replica_a, clock(), 1, lease_seconds=60))
        await replica_a.inside.wait()
        claim_b = asyncio.create_task(outbox.claim_due(db, clock(), 10, lease_seconds=60))
        await asyncio.sleep(0.2)
        replica_a.go.set()
        taken_a, taken_b = await claim_a, await claim_b
    finally:
        await replica_a.dispose()
    assert [m.id for m in taken_a] == [elder]
    assert younger not in [m.id for m in taken_b]


class DriverError(Exception):
    sqlstate = "40P01"


async def test_a_hook_aborted_by_a_deadlock_runs_again(db: Database, clock: FakeClock) -> None:
    [msg_id] = await add(db, clock)
    calls: list[int] = []

    async def on_done(session: AsyncSession, msg: OutboxMessage, result: dict[str, Any]) -> None:
        calls.append(msg.id)
        outbox.enqueue(session, kind="note", destination="x:y", payload={}, now=clock())
        if len(calls) == 1:
            raise DBAPIError("UPDATE cards …", {}, DriverError("deadlock detected"))

    worker = OutboxWorker(db, OutboxSettings(), {"text": Recorder()}, clock=clock, on_done=on_done)
    await worker.run_once()
    assert calls == [msg_id, msg_id]
    sent, note = await rows(db)
    assert (sent.status, note.kind) == ("sent", "note")  # the hook's write, once


async def _dead_elder(db: Database, clock: FakeClock, dest: str) -> tuple[list[int], Recorder]:
    """Three rows of one case to `dest`; the first is refused for good, the rest are fine."""
    ids = await add(db, clock, 3, dest=dest)
    perform = Recorder(fail=1, error=PermanentError("HTTP 400 schema"))
    worker = OutboxWorker(
        db, OutboxSettings(), {"text": perform}, clock=clock, strict=("channel:",)
    )
    await worker.drain()
    clock.advance(3600)
    await worker.drain()
    return ids, perform


async def test_on_the_money_path_a_dead_row_holds_its_case_until_an_admin_decides(
    db: Database, clock: FakeClock
) -> None:
    ids, perform = await _dead_elder(db, clock, "channel:generic")
    assert perform.calls == [ids[0]]  # the later two are held, untried
    assert [(r.status, r.attempts) for r in await rows(db)] == [
        ("dead", 1),
        ("pending", 0),
        ("pending", 0),
    ]
    async with db.read() as session:
        assert await outbox.held_behind(session, (await rows(db))[0]) == 2
    worker = OutboxWorker(
        db, OutboxSettings(), {"text": perform}, clock=clock, strict=("channel:",)
    )
    async with db.transaction() as session:  # fixed: revived, it goes first, then the rest
        assert await outbox_dead.revive(session, [ids[0]], now=clock()) == 1
    await worker.drain()
    assert perform.calls == [ids[0], *ids]
    assert {r.status for r in await rows(db)} == {"sent"}


async def test_a_discarded_dead_row_releases_the_rows_it_held(
    db: Database, clock: FakeClock
) -> None:
    ids, perform = await _dead_elder(db, clock, "channel:generic")
    async with db.transaction() as session:
        assert await outbox_dead.discard(session, [ids[1]]) == 0  # only dead rows are discarded
        assert await outbox_dead.discard(session, [ids[0]]) == 1
    worker = OutboxWorker(
        db, OutboxSettings(), {"text": perform}, clock=clock, strict=("channel:",)
    )
    await worker.drain()
    assert perform.calls == ids
    assert [r.status for r in await rows(db)] == ["void", "sent", "sent"]


async def test_in_chat_a_dead_row_releases_the_rest_of_its_case(
    db: Database, clock: FakeClock
) -> None:
    # A card update past its response_code's life must not hide the member's next cards.
    ids, perform = await _dead_elder(db, clock, "wecom:xiaozhou")
    assert perform.calls == ids
    assert [r.status for r in await rows(db)] == ["dead", "sent", "sent"]


async def test_a_younger_row_waits_while_its_elder_backs_off(
    db: Database, clock: FakeClock
) -> None:
    ids = await add(db, clock, 2, dest="channel:generic")
    perform = Recorder(fail=1)
    worker = OutboxWorker(db, OutboxSettings(), {"text": perform}, clock=clock)
    await worker.drain()
    assert perform.calls == [ids[0]]
    assert [(r.status, r.attempts) for r in await rows(db)] == [("pending", 1), ("pending", 0)]
    clock.advance(600)
    await worker.drain()
    assert perform.calls == [ids[0], ids[0], ids[1]]


async def test_a_rounds_hooks_share_one_savepoint_and_a_failing_one_fails_alone(
    db: Database, clock: FakeClock
) -> None:
    ids = [i for n in range(4) for i in await add(db, clock, dest=f"wecom:u{n}")]
    statements: list[str] = []

    def seen(_conn: Any, _cursor: Any, sql: str, *_: Any) -> None:
        statements.append(sql.split()[0].upper())

    async def on_done(session: AsyncSession, msg: OutboxMessage, result: dict[str, Any]) -> None:
        outbox.enqueue(
            session, kind="note", destination="x:y", payload={"of": msg.id}, now=clock()
        )
        await session.flush()
        if msg.id == poisoned:
            raise RuntimeError("card table locked")

    worker = OutboxWorker(db, OutboxSettings(), {"text": Recorder()}, clock=clock, on_done=on_done)
    poisoned = -1
    event.listen(db.engine.sync_engine, "before_cursor_execute", seen)
    try:
        await worker.run_once()
    finally:
        event.remove(db.engine.sync_engine, "before_cursor_execute", seen)
    assert statements.count("SAVEPOINT") == 1  # four hooks, one savepoint
    notes = [r.payload["of"] for r in await rows(db) if r.kind == "note"]
    assert sorted(notes) == ids

    more = [i for n in range(3) for i in await add(db, clock, dest=f"wecom:v{n}")]
    poisoned = more[1]
    await worker.run_once()
    done = {r.id: r.status for r in await rows(db) if r.id in more}
    assert done == {i: "sent" for i in more}  # a failing hook leaves its row's outcome
    notes = [r.payload["of"] for r in await rows(db) if r.kind == "note"]
    assert sorted(notes) == sorted([*ids, more[0], more[2]])  # its own write rolled back


async def test_a_rounds_preload_reads_once_and_a_failing_hook_still_fails_alone(
    db: Database, clock: FakeClock
) -> None:
    ids = [i for n in range(3) for i in await add(db, clock, dest=f"wecom:p{n}")]
    loads: list[list[tuple[int, str]]] = []

    async def preload(
        session: AsyncSession, sent: Sequence[tuple[OutboxMessage, dict[str, Any]]]
    ) -> list[OutboxMessage]:
        loads.append(sorted((m.id, r["ref"]) for m, r in sent))
        return [m for m, _ in sent]

    async def on_done(session: AsyncSession, msg: OutboxMessage, result: dict[str, Any]) -> None:
        note = {"of": msg.id}
        outbox.enqueue(session, kind="note", destination="x:y", payload=note, now=clock())
        await session.flush()
        if msg.id == ids[1]:
            raise RuntimeError("card table locked")

    worker = OutboxWorker(
        db, OutboxSettings(), {"text": Recorder()}, clock=clock, on_done=on_done, preload=preload
    )
    await worker.run_once()
    # Once for the round, with each sent row and its performer's result; the hooks run
    # again one by one without it.
    assert loads == [[(i, f"handle-{i}") for i in ids]]
    done = {r.id: r.status for r in await rows(db) if r.id in ids}
    assert done == {i: "sent" for i in ids}
    notes = [r.payload["of"] for r in await rows(db) if r.kind == "note"]
    assert sorted(notes) == [ids[0], ids[2]]  # the failing hook's own write rolled back
