"""The outbox's dead letters and depth: what the `outbox_depth` gauge counts and what
an operator reads, revives or discards (`returnhub outbox dead|retry|discard`,
docs/operations.md). The delivery path is storage/outbox.py."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from storage.models import OutboxMessage
from storage.outbox import DEAD, PENDING, VOID, naive


async def depth(session: AsyncSession) -> dict[str, int]:
    """Pending and dead counts for the dashboard and the `outbox_depth` gauge."""
    stmt = (
        select(OutboxMessage.status, func.count())
        .where(OutboxMessage.status.in_((PENDING, DEAD)))
        .group_by(OutboxMessage.status)
    )
    counts = {PENDING: 0, DEAD: 0}
    for status, count in (await session.execute(stmt)).all():
        counts[status] = int(count)
    return counts


async def dead_letters(session: AsyncSession, limit: int = 100) -> list[OutboxMessage]:
    """Dead rows, newest first, for an operator to read before reviving them."""
    stmt = (
        select(OutboxMessage)
        .where(OutboxMessage.status == DEAD)
        .order_by(OutboxMessage.id.desc())
        .limit(limit)
    )
    return list(await session.scalars(stmt))


async def revive(session: AsyncSession, ids: list[int] | None, *, now: datetime) -> int:
    """Give dead rows (all, or `ids`) a fresh retry period once the fault is fixed.

    They go out before the rows their death held, in the order written."""
    stmt = update(OutboxMessage).where(OutboxMessage.status == DEAD)
    if ids is not None:
        stmt = stmt.where(OutboxMessage.id.in_(ids))
    stmt = stmt.values(
        status=PENDING, attempts=0, next_at=naive(now), locked_until=None, failing_since=None
    ).execution_options(synchronize_session=False)
    result: Any = await session.execute(stmt)
    return int(result.rowcount or 0)


async def discard(session: AsyncSession, ids: list[int]) -> int:
    """Give up on dead rows `ids` for good (void): the rows their death held go on."""
    stmt = (
        update(OutboxMessage)
        .where(OutboxMessage.status == DEAD, OutboxMessage.id.in_(ids))
        .values(status=VOID)
        .execution_options(synchronize_session=False)
    )
    result: Any = await session.execute(stmt)
    return int(result.rowcount or 0)
