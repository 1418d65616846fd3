"""Durable timers: fire once, inside the claiming transaction, on both engines."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from storage import outbox, timers
from storage.db import Database
from storage.models import OutboxMessage, Timer
from tests.conftest import ONLY_PG
from tests.unit.test_outbox_rounds import commits

NOW = datetime(2025, 3, 1, 9, 0, tzinfo=UTC)
CASE_A, CASE_B = "RC-250301-0001", "RC-250301-0002"
DAY = timedelta(days=1)


async def add(db: Database, *specs: tuple[str, str, float]) -> list[int]:
    """(case_id, kind, minutes from NOW) -> timer ids."""
    async with db.transaction() as session:
        made = [
            timers.schedule(
                session,
                case_id=case,
                kind=kind,
                due_at=NOW + timedelta(minutes=minutes),
                step_id=7,
                payload={"pct": 50},
            )
            for case, kind, minutes in specs
        ]
    return [t.id for t in made]


async def statuses(db: Database) -> dict[int, str]:
    async with db.read() as session:
        return {t.id: t.status for t in (await session.scalars(select(Timer))).all()}


async def outbox_rows(db: Database) -> list[OutboxMessage]:
    async with db.read() as session:
        return list((await session.scalars(select(OutboxMessage))).all())


async def remind(session: AsyncSession, timer: Timer) -> None:
    """What handlers/sla.py does: write the reminder card into the outbox."""
    outbox.enqueue(
        session,
        kind="card",
        destination="wecom:lead",
        payload={"timer": timer.id, "pct": timer.payload["pct"]},
        now=NOW,
        case_id=timer.case_id,
    )


async def test_due_timers_fire_once_oldest_first(db: Database) -> None:
    late, early, future = await add(
        db, (CASE_A, "remind", 0), (CASE_A, "remind", -30), (CASE_B, "escalate", 60)
    )
    fired = await timers.claim_due(db, NOW, 10, remind)
    assert [t.id for t in fired] == [early, late]
    assert all(t.status == "fired" for t in fired)
    assert await timers.claim_due(db, NOW, 10, remind) == []
    assert await statuses(db) == {late: "fired", early: "fired", future: "pending"}
    assert sorted(r.payload["timer"] for r in await outbox_rows(db)) == sorted([early, late])


async def test_limit_bounds_one_call(db: Database) -> None:
    await add(db, *[(CASE_A, "remind", -i) for i in range(5)])
    assert len(await timers.claim_due(db, NOW, 2, remind)) == 2
    assert len(await timers.claim_due(db, NOW, 10, remind)) == 3


async def test_a_failing_hook_rolls_back_and_leaves_the_timer_pending(db: Database) -> None:
    bad, good = await add(db, (CASE_A, "remind", -5), (CASE_B, "remind", 0))

    async def flaky(session: AsyncSession, timer: Timer) -> None:
        await remind(session, timer)
        if timer.id == bad:
            raise RuntimeError("template missing")

    fired = await timers.claim_due(db, NOW, 10, flaky)
    assert [t.id for t in fired] == [good]  # the bad one does not block the batch
    assert await statuses(db) == {bad: "pending", good: "fired"}
    # The hook's effects rolled back with it: only the good timer's card exists.
    assert [r.payload["timer"] for r in await outbox_rows(db)] == [good]

    # Retried later, not on every tick.
    assert await timers.claim_due(db, NOW + timedelta(seconds=30), 10, remind) == []
    later = NOW + timers.RETRY_DELAY
    assert [t.id for t in await timers.claim_due(db, later, 10, remind)] == [bad]
    assert await statuses(db) == {bad: "fired", good: "fired"}


async def test_cancel_for_case(db: Database) -> None:
    a_remind, a_escalate, b_remind = await add(
        db, (CASE_A, "remind", -1), (CASE_A, "escalate", -1), (CASE_B, "remind", -1)
    )
    async with db.transaction() as session:
        assert await timers.cancel_for_case(session, CASE_A, kinds=["remind"]) == 1
    async with db.transaction() as session:
        assert await timers.cancel_for_case(session, CASE_A) == 1
        assert await timers.cancel_for_case(session, CASE_A) == 0
    fired = await timers.claim_due(db, NOW, 10, remind)
    assert [t.id for t in fired] == [b_remind]
    assert await statuses(db) == {
        a_remind: "cancelled",
        a_escalate: "cancelled",
        b_remind: "fired",
    }
    async with db.transaction() as session:  # fired timers are history, not cancelled
        assert await timers.cancel_for_case(session, CASE_B) == 0


@ONLY_PG
async def test_two_claimers_on_postgresql_fire_each_timer_once(db: Database) -> None:
    ids = await add(db, *[(f"RC-250301-{i:04d}", "remind", -i % 7) for i in range(100)])
    seen: list[list[int]] = [[], []]

    def hook(mine: list[int]) -> timers.TimerHook:
        async def fire(session: AsyncSession, timer: Timer) -> None:
            mine.append(timer.id)
            await remind(session, timer)
            await asyncio.sleep(0.002)  # hold the row lock while the other replica runs

        return fire

    async def replica(base: Database, mine: list[int]) -> None:
        while await timers.claim_due(base, NOW + timedelta(hours=1), 10, hook(mine)):
            pass

    second = Database(db.url)
    try:
        await asyncio.gather(replica(db, seen[0]), replica(second, seen[1]))
    finally:
        await second.dispose()
    fired = seen[0] + seen[1]
    assert len(fired) == len(set(fired)) == 100
    assert sorted(fired) == sorted(ids)
    assert seen[0] and seen[1], "both replicas should have taken part"
    assert len(await outbox_rows(db)) == 100
    assert set((await statuses(db)).values()) == {"fired"}


async def test_a_batch_is_one_transaction_and_a_poison_timer_fails_alone(db: Database) -> None:
    ids = await add(db, *[(f"RC-250301-{i:04d}", "remind", -10 + i) for i in range(5)])
    poison = ids[2]

    async def hook(session: AsyncSession, timer: Timer) -> None:
        await remind(session, timer)
        timers.schedule(session, case_id=timer.case_id, kind="next", due_at=NOW + DAY)
        await session.flush()  # its writes reach the database before it fails
        if timer.id == poison:
            raise RuntimeError("template missing")

    with commits(db) as seen:
        fired = await timers.claim_due(db, NOW, 10, hook)
    assert len(seen) == 1  # the claim, every hook and the marks: one transaction
    assert [t.id for t in fired] == [i for i in ids if i != poison]
    state = await statuses(db)
    assert state[poison] == "pending" and {state[i] for i in ids if i != poison} == {"fired"}
    # The poison's card and follow-up timer rolled back with its savepoint, nobody else's.
    assert sorted(r.payload["timer"] for r in await outbox_rows(db)) == sorted(
        i for i in ids if i != poison
    )
    assert list(state.values()).count("pending") == 1 + 4  # the poison, and 4 "next" timers
    async with db.read() as session:
        row = await session.get(Timer, poison)
        assert row is not None and row.due_at == outbox.naive(NOW + timers.RETRY_DELAY)
