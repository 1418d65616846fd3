"""Acknowledged-but-unhandled inbound events (the durable half of "ack, then work").

The edge writes a row before it answers the platform; the handler's transaction
deletes it (handlers/inbox.py); the clock re-runs what a crash or a failed
handler left behind. Rows are claimed with a lease, `SKIP LOCKED` on PostgreSQL,
so two replicas never run one event at the same time.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from storage.db import Database
from storage.models import InboundEvent, InboxKey
from storage.outbox import naive

PENDING, DEAD = "pending", "dead"


async def put(
    session: AsyncSession,
    *,
    key: str,
    kind: str,
    payload: dict[str, Any],
    now: datetime,
    grace: timedelta,
) -> bool:
    """Record an event as received; False when it is already known (handled or waiting)."""
    if await session.get(InboxKey, key) is not None:
        return False
    if await session.get(InboundEvent, key) is not None:
        return False
    at = naive(now)
    session.add(
        InboundEvent(
            key=key,
            kind=kind,
            payload=payload,
            status=PENDING,
            attempts=0,
            next_at=at + grace,
            received_at=at,
            last_error="",
        )
    )
    await session.flush()
    return True


async def done(session: AsyncSession, key: str) -> None:
    """Called in the handler's transaction: the event's effects and this go together."""
    await session.execute(delete(InboundEvent).where(InboundEvent.key == key))


async def claim_due(
    db: Database, now: datetime, limit: int, lease: timedelta
) -> list[InboundEvent]:
    """Lease rows whose handler has not committed in time, oldest first."""
    at = naive(now)
    async with db.transaction() as session:
        rows = list(
            await session.scalars(
                select(InboundEvent)
                .where(InboundEvent.status == PENDING, InboundEvent.next_at <= at)
                .order_by(InboundEvent.received_at, InboundEvent.key)
                .limit(limit)
                .with_for_update(**db.for_update(skip_locked=True))
            )
        )
        for row in rows:
            row.attempts += 1
            row.next_at = at + lease
    return rows


async def failed(db: Database, key: str, error: str, *, retry_at: datetime | None) -> None:
    """The handler raised: try again at `retry_at`, or give up (dead) when it is None."""
    async with db.transaction() as session:
        row = await session.get(InboundEvent, key)
        if row is None:
            return
        row.last_error = error[:2000]
        if retry_at is None:
            row.status = DEAD
        else:
            row.next_at = naive(retry_at)
