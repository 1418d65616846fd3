"""The outbox: side effects written in the same transaction as the state change.

Handlers never call an HTTP API (DESIGN.md §2): they `enqueue` a row in the
transaction that changes the case, so the effect leaves if and only if the change
commits. The delivery worker (bot/outbox.py) claims due rows under a lease and
records the outcome. Delivery is at-least-once: a worker that dies between
performing and marking leaves the lease to expire and the row is performed again.

Every `mark_*` is fenced on the lease the row was claimed with (`locked_until`),
so a worker whose lease ran out cannot overwrite the outcome recorded by the
worker that re-claimed the row.

One case's rows to one destination leave in the order written: a row is not
claimed while an elder is backing off or leased elsewhere, and on the money path
(`strict` destination prefixes: the shop channels) not while an elder is dead
either, until an operator revives or discards it (docs/operations.md).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import and_, false, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from storage.db import Database
from storage.models import OutboxMessage

# void: withdrawn before it left (a refund for a case the channel closed); never sent.
PENDING, SENT, DEAD, VOID = "pending", "sent", "dead", "void"
ERROR_MAX_CHARS = 2000
# pg_advisory_xact_lock key serializing outbox claims across replicas ("RHOB").
CLAIM_LOCK = 0x52484F42


def naive(moment: datetime) -> datetime:
    """Naive UTC, the form every stored timestamp takes (SQLite has no zone type)."""
    if moment.tzinfo is None:
        return moment
    return moment.astimezone(UTC).replace(tzinfo=None)


def enqueue(
    session: AsyncSession,
    *,
    kind: str,
    destination: str,
    payload: dict[str, Any],
    now: datetime,
    case_id: str | None = None,
    delay: timedelta | None = None,
) -> OutboxMessage:
    """Add a message to the caller's transaction; it is only visible once that commits.

    Plain function, no I/O: the row is flushed with the caller's other writes.
    """
    at = naive(now)
    msg = OutboxMessage(
        kind=kind,
        destination=destination,
        case_id=case_id,
        payload=payload,
        status=PENDING,
        attempts=0,
        next_at=at + delay if delay else at,
        locked_until=None,
        last_error="",
        created_at=at,
    )
    session.add(msg)
    return msg


def _under(prefixes: tuple[str, ...]) -> Any:
    """Rows whose destination starts with one of `prefixes` (none: no row)."""
    if not prefixes:
        return false()
    return or_(*(OutboxMessage.destination.startswith(p, autoescape=True) for p in prefixes))


async def claim_due(
    db: Database,
    now: datetime,
    limit: int,
    lease_seconds: int,
    *,
    strict: tuple[str, ...] = (),
    exclusive: tuple[str, ...] = (),
) -> list[OutboxMessage]:
    """Lease up to `limit` due rows, oldest first, in one short transaction.

    On PostgreSQL `FOR UPDATE SKIP LOCKED` lets replicas claim disjoint batches; on
    SQLite the in-process writer lock serializes claimers. The returned rows are
    detached; their `locked_until` is the lease token the `mark_*` calls check.

    On PostgreSQL the claims themselves take turns (a transaction-scoped advisory
    lock, held for one SELECT and one UPDATE): a replica's claim then sees the
    leases the previous claim committed, so it neither takes a row past an elder
    another replica is claiming right now (SKIP LOCKED would pass over that elder
    unseen) nor fills its batch with rows that must wait.

    Under a `strict` prefix a dead elder holds the younger rows too (the money path
    keeps its order until a person decides). Under an `exclusive` prefix (the
    rate-limited ones) a destination with a row leased by any worker is left alone,
    so one worker at a time sends to it and the counts it checks are complete.
    """
    at = naive(now)
    # One case's messages to one destination leave in the order they were written
    # (approved before refund_released, a card before its update), even after a
    # retry gave the older one a later next_at: a row waits while an elder is
    # backing off or leased elsewhere. Elders due now are claimed in the same batch
    # (ordered by id, so a LIMIT never takes a row without its elders) and the
    # worker runs them first, releasing the younger ones if an elder fails.
    elder = aliased(OutboxMessage)
    waits = (
        select(elder.id)
        .where(
            elder.destination == OutboxMessage.destination,
            elder.case_id == OutboxMessage.case_id,
            elder.id < OutboxMessage.id,
            or_(
                and_(
                    elder.status == PENDING,
                    or_(elder.next_at > at, elder.locked_until >= at),
                ),
                and_(elder.status == DEAD, _under(strict)),
            ),
        )
        .exists()
    )
    busy = aliased(OutboxMessage)
    in_flight = (
        select(busy.id)
        .where(
            busy.destination == OutboxMessage.destination,
            busy.status == PENDING,
            busy.locked_until >= at,
        )
        .exists()
    )
    async with db.transaction() as session:
        stmt = (
            select(OutboxMessage)
            .where(
                OutboxMessage.status == PENDING,
                OutboxMessage.next_at <= at,
                or_(OutboxMessage.locked_until.is_(None), OutboxMessage.locked_until < at),
                ~waits,
                ~and_(_under(exclusive), in_flight),
            )
            .order_by(OutboxMessage.id)
            .limit(limit)
            .with_for_update(**db.for_update(skip_locked=True))
        )
        if not db.is_sqlite:
            await session.execute(select(func.pg_advisory_xact_lock(CLAIM_LOCK)))
        rows = list((await session.scalars(stmt)).all())
        lease = at + timedelta(seconds=lease_seconds)
        for row in rows:
            row.locked_until = lease
    return rows


async def _finish(session: AsyncSession, msg: OutboxMessage, **values: Any) -> bool:
    """Apply `values` if the row is still pending under our lease; False if the lease was lost."""
    stmt = (
        update(OutboxMessage)
        .where(
            OutboxMessage.id == msg.id,
            OutboxMessage.status == PENDING,
            OutboxMessage.locked_until == msg.locked_until,
        )
        .values(**values)
        .execution_options(synchronize_session=False)
    )
    result: Any = await session.execute(stmt)
    return bool(result.rowcount)


async def mark_sent(
    session: AsyncSession, msg: OutboxMessage, *, now: datetime, sends: int = 1
) -> bool:
    """The far side accepted it, using `sends` of its messages (0: coalesced into
    another row's). `attempts` counts performances, successful or not."""
    return await _finish(
        session,
        msg,
        status=SENT,
        sent_at=naive(now),
        sends=sends,
        attempts=OutboxMessage.attempts + 1,
        locked_until=None,
    )


async def mark_retry(
    session: AsyncSession,
    msg: OutboxMessage,
    *,
    next_at: datetime,
    error: str,
    failing_since: datetime,
) -> bool:
    """A transient failure: count the attempt and come back at `next_at`.

    `failing_since` is when this run of failures began (the give-up clock)."""
    return await _finish(
        session,
        msg,
        next_at=naive(next_at),
        last_error=error[:ERROR_MAX_CHARS],
        attempts=OutboxMessage.attempts + 1,
        failing_since=naive(failing_since),
        locked_until=None,
    )


async def mark_dead(session: AsyncSession, msg: OutboxMessage, *, error: str) -> bool:
    """Dead letter: kept for the operators with its last error, never claimed again."""
    return await _finish(
        session,
        msg,
        status=DEAD,
        last_error=error[:ERROR_MAX_CHARS],
        attempts=OutboxMessage.attempts + 1,
        locked_until=None,
    )


async def defer(session: AsyncSession, msg: OutboxMessage, *, next_at: datetime) -> bool:
    """Put the row back untouched until `next_at` (rate limited): no attempt is burned."""
    return await _finish(session, msg, next_at=naive(next_at), locked_until=None)


async def void_pending(session: AsyncSession, case_id: str, kind: str, *, now: datetime) -> int:
    """Withdraw the case's pending rows of `kind` that no worker holds; returns how many.

    Runs in the caller's transaction. A row under a live lease may be on the wire
    already and is left alone: its outcome is recorded as usual. On PostgreSQL this
    waits for a claim in progress, then sees its lease and skips the row.
    """
    at = naive(now)
    stmt = (
        update(OutboxMessage)
        .where(
            OutboxMessage.case_id == case_id,
            OutboxMessage.kind == kind,
            OutboxMessage.status == PENDING,
            or_(OutboxMessage.locked_until.is_(None), OutboxMessage.locked_until < at),
        )
        .values(status=VOID, locked_until=None)
        .execution_options(synchronize_session=False)
    )
    result: Any = await session.execute(stmt)
    return int(result.rowcount or 0)


def _sent_to(destination: str, since: datetime) -> Any:
    return and_(
        OutboxMessage.destination == destination,
        OutboxMessage.status == SENT,
        OutboxMessage.sent_at > naive(since),
        OutboxMessage.sends > 0,
    )


async def sends_since(session: AsyncSession, destination: str, since: datetime) -> int:
    """Far-side messages sent to `destination` after `since` (per-destination rate limits)."""
    stmt = select(func.coalesce(func.sum(OutboxMessage.sends), 0)).where(
        _sent_to(destination, since)
    )
    return int((await session.scalar(stmt)) or 0)


async def sends_log(
    session: AsyncSession, destination: str, since: datetime
) -> list[tuple[datetime, int]]:
    """(sent_at, sends) to `destination` after `since`, oldest first: when a full
    window frees enough room, each send leaving it `span` after it went."""
    stmt = (
        select(OutboxMessage.sent_at, OutboxMessage.sends)
        .where(_sent_to(destination, since))
        .order_by(OutboxMessage.sent_at)
    )
    return [(at, n) for at, n in (await session.execute(stmt)).all() if at is not None]


async def held_behind(session: AsyncSession, msg: OutboxMessage) -> int:
    """Pending rows of `msg`'s case and destination written after it (held on a strict
    destination while `msg` is dead)."""
    if msg.case_id is None:
        return 0
    stmt = select(func.count()).where(
        OutboxMessage.case_id == msg.case_id,
        OutboxMessage.destination == msg.destination,
        OutboxMessage.status == PENDING,
        OutboxMessage.id > msg.id,
    )
    return int((await session.scalar(stmt)) or 0)


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
