"""Named leases: which one process holds a job that must run in exactly one place.

A DingTalk Stream connection, a channel poller per shop: with several replicas on
one database, exactly one of them should do it, and another should take over
within seconds when that one dies. A lease is a row `(name, holder, expires_at)`:
`acquire` takes it when it is free, expired, or already ours (which renews it), in
one atomic `INSERT … ON CONFLICT DO UPDATE … WHERE` on both engines, so two
replicas racing for it cannot both win. The holder renews before `expires_at`
(every ttl/3 is the habit); a holder that stops renewing loses the lease after
its ttl, and the next `acquire` by anyone else succeeds. `release` gives it up at
once on a clean shutdown.

A lease is not a lock on data: whatever it guards must still be idempotent (the
inbox keys), because a holder paused past its ttl may act once more before it
notices it lost the lease.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import delete, or_, select

from storage.db import Database, dialect_insert
from storage.models import Lease
from storage.outbox import naive


def _now(now: datetime | None) -> datetime:
    return naive(now or datetime.now(UTC))


async def acquire(
    db: Database, name: str, holder: str, ttl: timedelta, now: datetime | None = None
) -> bool:
    """Take or renew lease `name` for `holder` until now + ttl; True when it is ours."""
    at = _now(now)
    table = Lease.__table__
    stmt = dialect_insert(db, table).values(name=name, holder=holder, expires_at=at + ttl)
    stmt = stmt.on_conflict_do_update(
        index_elements=[table.c.name],
        set_={"holder": holder, "expires_at": at + ttl},
        where=or_(table.c.holder == holder, table.c.expires_at <= at),
    ).returning(table.c.holder)
    async with db.transaction() as session:
        won = (await session.execute(stmt)).scalar_one_or_none()
    return won == holder


async def release(db: Database, name: str, holder: str) -> None:
    """Give the lease up now (a no-op when it is not ours any more)."""
    async with db.transaction() as session:
        await session.execute(delete(Lease).where(Lease.name == name, Lease.holder == holder))


async def holder_of(db: Database, name: str, now: datetime | None = None) -> str | None:
    """Who holds lease `name` now, or None when nobody does (free or expired)."""
    query = select(Lease.holder).where(Lease.name == name, Lease.expires_at > _now(now))
    async with db.read() as session:
        holder: str | None = (await session.execute(query)).scalar_one_or_none()
    return holder
