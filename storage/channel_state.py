"""Small named records a channel keeps in the database: poll cursors, refreshed tokens.

Both must outlive the process and be shared by every replica: a cursor kept in
memory would re-poll (or skip) a window after a restart, and a refresh token
rotated in memory only would leave the next start with a dead one. One row per
name, written with an upsert on both engines.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select

from storage.db import Database, dialect_insert
from storage.models import ChannelState
from storage.outbox import naive


async def get(db: Database, name: str) -> dict[str, Any] | None:
    """The record called `name`, or None."""
    async with db.read() as session:
        value = await session.scalar(select(ChannelState.value).where(ChannelState.name == name))
    return dict(value) if isinstance(value, dict) else None


async def put(db: Database, name: str, value: dict[str, Any], now: datetime | None = None) -> None:
    """Create or replace the record called `name`."""
    at = naive(now or datetime.now(UTC))
    table = ChannelState.__table__
    stmt = dialect_insert(db, table).values(name=name, value=value, updated_at=at)
    stmt = stmt.on_conflict_do_update(
        index_elements=[table.c.name], set_={"value": value, "updated_at": at}
    )
    async with db.transaction() as session:
        await session.execute(stmt)
