"""Acknowledged-but-unhandled inbound events (the durable half of "ack, then work").

The edge writes a row before it answers the platform; the handler's transaction
deletes it (handlers/inbox.py); the clock re-runs what a crash or a failed
handler left behind. Rows are claimed with a lease, `SKIP LOCKED` on PostgreSQL,
so two replicas never run one event at the same time.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession

from storage.db import Database
from storage.models import InboundEvent, InboxKey
from storage.outbox import naive

PENDING, DEAD = "pending", "dead"


@dataclass(frozen=True, slots=True)
class Received:
    """An acknowledged event to record: `grace` is how long its own handler has."""

    key: str
    kind: str
    payload: dict[str, Any]
    now: datetime
    grace: timedelta


async def put_many(session: AsyncSession, events: Sequence[Received]) -> list[bool]:
    """Record a batch of events as received; per event, True when it is new.

    One read of the keys handled or already waiting, then ONE `INSERT … ON
    CONFLICT DO NOTHING RETURNING key` for the rest: a key taken by a concurrent
    transaction comes back as not new. A key repeated inside the batch is new once,
    at its first place.

    The read comes first because it never waits: on PostgreSQL an INSERT of a key
    whose waiting row a handler's transaction is deleting waits for that
    transaction to end, so one redelivered card click held the whole batch (its
    webhooks too) behind the click's handling (card-click p99 0.5-1.7 s, p50 60 ms).
    The INSERT still waits for another batch inserting the same key, and in the
    narrow race where the key's row committed after the read and a handler is
    already deleting it: both rare, and both answered correctly once it ends.
    """
    keys = list(dict.fromkeys(event.key for event in events))
    known = (
        select(InboxKey.key)
        .where(InboxKey.key.in_(keys))
        .union_all(select(InboundEvent.key).where(InboundEvent.key.in_(keys)))
    )
    seen = set(await session.scalars(known))
    first: dict[str, Received] = {}
    for event in events:
        if event.key not in seen:
            first.setdefault(event.key, event)
    fresh: set[str] = set()
    if first:
        stmt = _insert(session).values(
            [
                {
                    "key": event.key,
                    "kind": event.kind,
                    "payload": event.payload,
                    "status": PENDING,
                    "attempts": 0,
                    "next_at": naive(event.now + event.grace),
                    "received_at": naive(event.now),
                    "last_error": "",
                }
                for event in first.values()
            ]
        )
        stmt = stmt.on_conflict_do_nothing(index_elements=["key"]).returning(InboundEvent.key)
        fresh = set(await session.scalars(stmt))
    return [first.get(event.key) is event and event.key in fresh for event in events]


def _insert(session: AsyncSession) -> Any:
    """The engine's INSERT construct (both have ON CONFLICT … RETURNING)."""
    if session.get_bind().dialect.name == "sqlite":
        return sqlite_insert(InboundEvent)
    return pg_insert(InboundEvent)


async def done(session: AsyncSession, key: str) -> None:
    """Called in the handler's transaction: the event's effects and this go together."""
    await session.execute(delete(InboundEvent).where(InboundEvent.key == key))


async def due_now(db: Database, now: datetime) -> int:
    """Make every unhandled event due at `now`; how many there were. For a process that
    knows it is the only one (SQLite's): whoever recorded them is dead."""
    at = naive(now)
    async with db.transaction() as session:
        result = await session.execute(
            update(InboundEvent)
            .where(InboundEvent.status == PENDING, InboundEvent.next_at > at)
            .values(next_at=at)
        )
    return int(getattr(result, "rowcount", 0) or 0)


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
