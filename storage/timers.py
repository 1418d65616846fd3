"""Durable timers (SLA reminders, escalations): the truth about what is due lives in rows.

The clock never keeps reminders in memory: a handler `schedule`s a row in the
transaction that opens a step, `cancel_for_case` clears them when the case moves
on, and `claim_due` fires a batch of due rows in one transaction, each with the caller's
hook inside its own savepoint, so a hook's effects (audit rows, outbox cards, new
timers) and its timer's `fired` mark commit together or not at all. On
PostgreSQL the rows are locked `FOR UPDATE SKIP LOCKED` for the whole
transaction, so two replicas never fire the same timer.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterable
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import Table, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm.attributes import set_committed_value

from storage.db import Database, allow_savepoints
from storage.models import Timer
from storage.outbox import naive

log = logging.getLogger(__name__)

PENDING, FIRED, CANCELLED = "pending", "fired", "cancelled"

TimerHook = Callable[[AsyncSession, Timer], Awaitable[None]]
# Runs once after a batch's hooks, in its transaction (e.g. one digest per recipient).
BatchHook = Callable[[AsyncSession], Awaitable[None]]

CLOCK_LANE = "clock"  # the timer batch's turn at SQLite's writer (storage/writelock.py)
# A hook that failed is retried after this long rather than on every tick.
RETRY_DELAY = timedelta(seconds=60)


def schedule(
    session: AsyncSession,
    *,
    case_id: str,
    kind: str,
    due_at: datetime,
    step_id: int | None = None,
    payload: dict[str, Any] | None = None,
) -> Timer:
    """Add a timer to the caller's transaction (plain function, no I/O)."""
    timer = Timer(
        case_id=case_id,
        step_id=step_id,
        kind=kind,
        due_at=naive(due_at),
        status=PENDING,
        payload=payload or {},
    )
    session.add(timer)
    return timer


async def cancel_for_case(
    session: AsyncSession, case_id: str, kinds: Iterable[str] | None = None
) -> int:
    """Cancel the case's pending timers (all, or only `kinds`); returns how many.

    Runs in the caller's transaction. On PostgreSQL it waits for a timer being fired
    right now, then sees it `fired` and leaves it alone.
    """
    stmt = update(Timer).where(Timer.case_id == case_id, Timer.status == PENDING)
    if kinds is not None:
        stmt = stmt.where(Timer.kind.in_(list(kinds)))
    stmt = stmt.values(status=CANCELLED).execution_options(synchronize_session=False)
    result: Any = await session.execute(stmt)
    return int(result.rowcount or 0)


async def claim_due(
    db: Database,
    now: datetime,
    limit: int,
    hook: TimerHook,
    *,
    retry_delay: timedelta = RETRY_DELAY,
    finish: BatchHook | None = None,
) -> list[Timer]:
    """Fire up to `limit` due timers, oldest first; returns the fired ones (detached).

    One transaction per call: one SELECT claims the batch (`ix_timer_due`; FOR
    UPDATE SKIP LOCKED on PostgreSQL, so replicas claim disjoint batches and hold
    them until commit), each `hook(session, timer)` runs in its own SAVEPOINT, and
    one UPDATE marks the batch `fired`. A hook that raises is rolled back to its
    savepoint, so the timer stays `pending` with none of its effects, and its
    `due_at` is pushed by `retry_delay`: a poison timer neither spins nor starves
    the ones behind it, and the others commit. `finish(session)` runs after the
    hooks, in the same transaction.
    """
    at = naive(now)
    fired: list[Timer] = []
    failed: list[int] = []
    async with db.transaction(CLOCK_LANE) as session:
        await allow_savepoints(session)
        stmt = (
            select(Timer)
            .where(Timer.status == PENDING, Timer.due_at <= at)
            .order_by(Timer.due_at, Timer.id)
            .limit(limit)
            .with_for_update(**db.for_update(skip_locked=True))
        )
        for timer in list((await session.scalars(stmt)).all()):
            ident = (timer.id, timer.kind, timer.case_id)  # read before a rollback
            try:
                async with session.begin_nested():
                    await hook(session, timer)
            except Exception:
                log.exception(
                    "timer %s (%s) for case %s failed; retrying in %s", *ident, retry_delay
                )
                failed.append(ident[0])
                continue
            fired.append(timer)
        if finish is not None:
            await finish(session)
        await _set(session, [t.id for t in fired], status=FIRED)
        await _set(session, failed, due_at=at + retry_delay)
    for timer in fired:
        set_committed_value(timer, "status", FIRED)
    return fired


async def _set(session: AsyncSession, ids: list[int], **values: Any) -> None:
    """One UPDATE for the batch's pending timers `ids` (Core: no per-row flush)."""
    if ids:
        table = cast(Table, Timer.__table__)
        await session.execute(
            update(table).where(table.c.id.in_(ids), table.c.status == PENDING).values(**values)
        )
