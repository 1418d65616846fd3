"""Durable timers (SLA reminders, escalations): the truth about what is due lives in rows.

The clock never keeps reminders in memory: a handler `schedule`s a row in the
transaction that opens a step, `cancel_for_case` clears them when the case moves
on, and `claim_due` fires due rows one per transaction with the caller's hook
running inside it, so the hook's effects (audit rows, outbox cards, new timers)
and the `fired` mark commit together or not at all. On PostgreSQL the row is
locked `FOR UPDATE SKIP LOCKED` for the whole transaction, so two replicas never
fire the same timer.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterable
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from storage.db import Database
from storage.models import Timer
from storage.outbox import naive

log = logging.getLogger(__name__)

PENDING, FIRED, CANCELLED = "pending", "fired", "cancelled"

TimerHook = Callable[[AsyncSession, Timer], Awaitable[None]]

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
) -> list[Timer]:
    """Fire up to `limit` due timers, oldest first; returns the fired ones (detached).

    Each timer gets its own transaction: select it (SKIP LOCKED on PostgreSQL), await
    `hook(session, timer)`, mark it `fired`, commit. If the hook raises, that
    transaction rolls back, so the timer stays `pending` with none of the hook's
    effects; its `due_at` is pushed by `retry_delay` so a poison timer neither spins
    nor starves the ones behind it. Other timers in the batch are unaffected.
    """
    at = naive(now)
    fired: list[Timer] = []
    for _ in range(limit):
        timer: Timer | None = None
        ident: tuple[int, str, str] | None = None
        try:
            async with db.transaction() as session:
                stmt = (
                    select(Timer)
                    .where(Timer.status == PENDING, Timer.due_at <= at)
                    .order_by(Timer.due_at, Timer.id)
                    .limit(1)
                    .with_for_update(**db.for_update(skip_locked=True))
                )
                timer = (await session.scalars(stmt)).first()
                if timer is None:
                    break
                # Read before the hook: a rollback expires the instance.
                ident = (timer.id, timer.kind, timer.case_id)
                await hook(session, timer)
                timer.status = FIRED
        except Exception:
            if ident is None:
                raise
            timer_id, kind, case_id = ident
            log.exception(
                "timer %s (%s) for case %s failed; retrying in %s",
                timer_id,
                kind,
                case_id,
                retry_delay,
            )
            await _postpone(db, timer_id, at + retry_delay)
            continue
        if timer is not None:
            fired.append(timer)
    return fired


async def _postpone(db: Database, timer_id: int, due_at: datetime) -> None:
    async with db.transaction() as session:
        await session.execute(
            update(Timer)
            .where(Timer.id == timer_id, Timer.status == PENDING)
            .values(due_at=due_at)
            .execution_options(synchronize_session=False)
        )
