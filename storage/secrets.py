"""The server secret that signs card-button tokens and API cursors, kept in the database.

Cards sit in people's chats for days, so the secret must outlive the process that
signed them. Without a configured `server.secret` the first process to start makes
one and stores it; every replica and every restart then reads that one. A configured
secret wins; when it changes, the previous one is kept as retired and still verifies
for the grace period (`server.secret_grace_days`), so a rotation never kills the
cards in flight. New tokens are always signed with the current secret.

Two replicas starting at once: `INSERT … ON CONFLICT DO NOTHING`, then a locking
SELECT, so both read the row the first one wrote (PostgreSQL's row lock; SQLite's
single writer). The database therefore holds secrets: back it up as such.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from storage.db import Database, dialect_insert
from storage.models import CardRecord, ServerSecret

log = logging.getLogger(__name__)

CURRENT = "current"
RETIRED = "retired:"
# When card tokens without the case id stopped being issued; written only for a
# database that already had cards then (a fresh one has no old tokens to honour).
LEGACY = "legacy_tokens"


@dataclass(frozen=True, slots=True)
class Keyring:
    """Sign with the current secret; verify with it and the retired ones still in grace.

    Times are naive UTC, like every stored timestamp. The empty keyring (before
    start-up has loaded the real one) signs nothing and verifies nothing.
    """

    current: str = field(default="", repr=False)  # never in a log line or traceback
    retired: tuple[tuple[str, datetime], ...] = field(default=(), repr=False)  # (secret, at)
    grace: timedelta = timedelta(days=7)
    legacy_since: datetime | None = None

    def signing(self) -> str:
        if not self.current:
            raise RuntimeError("the server keyring is not loaded (see storage/secrets.py)")
        return self.current

    def verifying(self, now: datetime) -> tuple[str, ...]:
        """The current secret first, then each retired one whose grace has not run out."""
        if not self.current:
            return ()
        old = (s for s, at in self.retired if now < at + self.grace and s != self.current)
        return (self.current, *dict.fromkeys(old))

    def accepts_legacy(self, now: datetime) -> bool:
        """Whether tokens in the first format (no case id) are still honoured."""
        return self.legacy_since is not None and now < self.legacy_since + self.grace


def _retired_name(secret: str) -> str:
    return RETIRED + hashlib.sha256(secret.encode()).hexdigest()[:32]


async def _insert_new(
    session: AsyncSession, db: Database, name: str, value: str, now: datetime
) -> bool:
    """Insert the row unless it exists; True when this call wrote it."""
    table = ServerSecret.__table__
    retired_at = now if name == LEGACY else None
    stmt = dialect_insert(db, table).values(
        name=name, value=value, created_at=now, retired_at=retired_at
    )
    written = await session.execute(
        stmt.on_conflict_do_nothing(index_elements=[table.c.name]).returning(table.c.name)
    )
    return written.first() is not None


async def _retire(session: AsyncSession, db: Database, secret: str, now: datetime) -> None:
    table = ServerSecret.__table__
    stmt = dialect_insert(db, table).values(
        name=_retired_name(secret), value=secret, created_at=now, retired_at=now
    )
    await session.execute(
        stmt.on_conflict_do_update(index_elements=[table.c.name], set_={"retired_at": now})
    )


async def load_keyring(db: Database, configured: str, grace: timedelta, now: datetime) -> Keyring:
    """The keyring this process signs and verifies with, settled in one transaction.

    `configured` is `server.secret` ("" when unset); `now` is naive UTC. Retired
    secrets past their grace are deleted here, so a leaked old one does not linger.
    """
    async with db.transaction() as session:
        current = await _settle_current(session, db, configured, grace, now)
        await session.execute(
            delete(ServerSecret).where(
                ServerSecret.name != CURRENT, ServerSecret.retired_at <= now - grace
            )
        )
        others = await session.scalars(
            select(ServerSecret)
            .where(ServerSecret.name != CURRENT)
            .order_by(ServerSecret.retired_at.desc())  # the newest is the likeliest signer
        )
        retired: list[tuple[str, datetime]] = []
        legacy: datetime | None = None
        for other in others:
            if other.name == LEGACY:
                legacy = other.retired_at
            elif other.retired_at is not None:
                retired.append((other.value, other.retired_at))
        return Keyring(current, tuple(retired), grace, legacy)


async def _settle_current(
    session: AsyncSession, db: Database, configured: str, grace: timedelta, now: datetime
) -> str:
    """The current secret after this start: the stored one, the configured one (retiring
    the stored one if it differs), or a new one if there is none yet."""
    fresh = await _insert_new(session, db, CURRENT, configured or secrets.token_urlsafe(32), now)
    query = select(ServerSecret).where(ServerSecret.name == CURRENT)
    row = (await session.scalars(query.with_for_update(**db.for_update()))).one()
    days = grace.days
    if fresh and await session.scalar(select(CardRecord.id).limit(1)) is not None:
        await _insert_new(session, db, LEGACY, "", now)  # an upgrade: its cards are v1
        log.info(
            "已发出的旧格式卡片按钮在 %d 天内仍然有效 / card buttons signed in the previous "
            "token format stay valid for %d days",
            days,
            days,
        )
    if configured and row.value != configured:
        await _retire(session, db, row.value, now)
        row.value, row.created_at = configured, now
        log.warning(
            "server.secret 已更换：旧密钥在 %d 天内仍可验证已发出的卡片按钮和 API 游标 / "
            "server.secret changed: the previous one still verifies cards and API cursors "
            "for %d days",
            days,
            days,
        )
    elif not configured and fresh:
        log.info(
            "server.secret 未配置：已生成并存入数据库，所有副本和重启共用 / server.secret "
            "not set: generated one and stored it in the database for every replica and restart"
        )
    elif not configured:
        log.info(
            "server.secret 未配置：使用数据库中保存的密钥 / server.secret not set: using the "
            "one stored in the database"
        )
    return row.value
