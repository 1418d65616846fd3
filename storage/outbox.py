"""The outbox: side effects written in the same transaction as the state change.

Handlers never call an HTTP API (DESIGN.md §2): they `enqueue` a row in the
transaction that changes the case, so the effect leaves if and only if the change
commits. The delivery worker (bot/outbox.py) claims due rows under a lease and
records the outcome. Delivery is at-least-once: a worker that dies between
performing and marking leaves the lease to expire and the row is performed again.

A round's outcomes are written together (`record`), each fenced on the lease its
row was claimed with (`locked_until`), so a worker whose lease ran out cannot
overwrite the outcome recorded by the worker that re-claimed the row.

One case's rows to one destination leave in the order written: a row is not
claimed while an elder is backing off or leased elsewhere, and on the money path
(`strict` destination prefixes: the shop channels) not while an elder is dead
either, until an operator revives or discards it (docs/operations.md).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, cast

from sqlalchemy import Table, and_, bindparam, false, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased
from sqlalchemy.orm.attributes import set_committed_value

from storage.db import Database
from storage.models import OutboxMessage

# void: withdrawn before it left (a refund for a case the channel closed); never sent.
PENDING, SENT, DEAD, VOID = "pending", "sent", "dead", "void"
RETRY, DEFER = "retry", "defer"  # outcomes that leave a row pending (see `record`)
OUTBOX_LANE = "outbox"  # the outbox's turn at SQLite's writer (storage/writelock.py)
TABLE = cast(Table, OutboxMessage.__table__)  # Core, for the batched writes
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
    detached; their `locked_until` is the lease token `record` checks.

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
    async with db.transaction(OUTBOX_LANE) as session:
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
        # A row still carrying an expired lease was claimed by a worker that never
        # recorded the outcome (killed mid-send): that send is an attempt whose
        # result nobody knows, so the row goes out as a retry (`attempts` > 0),
        # which lets a performer ask the far side to drop a copy it already has.
        unrecorded = {row.id for row in rows if row.locked_until is not None}
        if rows:
            await session.execute(
                update(TABLE)
                .where(TABLE.c.id.in_([row.id for row in rows]))
                .values(locked_until=lease)
            )
        if unrecorded:
            await session.execute(
                update(TABLE)
                .where(TABLE.c.id.in_(unrecorded))
                .values(attempts=TABLE.c.attempts + 1)
            )
    for row in rows:
        set_committed_value(row, "locked_until", lease)
        if row.id in unrecorded:
            set_committed_value(row, "attempts", row.attempts + 1)
    return rows


@dataclass(frozen=True)
class Outcome:
    """What became of one claimed row, to be written by `record`.

    `kind` is SENT, RETRY, DEAD or DEFER (put back untouched, no attempt burned);
    `lease` is the `locked_until` the row was claimed with; `values` the columns
    that kind binds (see OUTCOMES)."""

    msg_id: int
    lease: datetime
    kind: str
    values: dict[str, Any]


# kind -> (fixed column values, bound columns, counts an attempt)
OUTCOMES: dict[str, tuple[dict[str, Any], tuple[str, ...], bool]] = {
    SENT: ({"status": SENT}, ("sent_at", "sends"), True),
    RETRY: ({}, ("next_at", "last_error", "failing_since"), True),
    DEAD: ({"status": DEAD}, ("last_error",), True),
    DEFER: ({}, ("next_at",), False),
}


def _bound(name: str, value: Any) -> Any:
    if isinstance(value, datetime):
        return naive(value)
    if name == "last_error":
        return str(value)[:ERROR_MAX_CHARS]
    return value


async def record(session: AsyncSession, db: Database, outcomes: Sequence[Outcome]) -> set[int]:
    """Write a round's outcomes in the caller's transaction: one SELECT, then one
    executemany UPDATE per kind. Returns the ids written.

    Every write is fenced on the lease the row was claimed with, so a worker whose
    lease ran out cannot overwrite the outcome recorded by the worker that
    re-claimed the row: such a row is left out (and locked FOR UPDATE on
    PostgreSQL until commit, so the set returned stays true)."""
    if not outcomes:
        return set()
    held = await session.execute(
        select(TABLE.c.id, TABLE.c.locked_until)
        .where(TABLE.c.id.in_([o.msg_id for o in outcomes]), TABLE.c.status == PENDING)
        .with_for_update(**db.for_update())
    )
    leases: dict[int, datetime | None] = {row_id: at for row_id, at in held.all()}
    kept = [o for o in outcomes if leases.get(o.msg_id) == naive(o.lease)]
    for kind, (fixed, bound, counts) in OUTCOMES.items():
        params = [
            {"b_id": o.msg_id, "b_lease": naive(o.lease)}
            | {f"b_{name}": _bound(name, o.values[name]) for name in bound}
            for o in kept
            if o.kind == kind
        ]
        if not params:
            continue
        values: dict[str, Any] = {**fixed, "locked_until": None}
        values |= {name: bindparam(f"b_{name}") for name in bound}
        if counts:
            values["attempts"] = TABLE.c.attempts + 1
        stmt = (
            update(TABLE)
            .where(
                TABLE.c.id == bindparam("b_id"),
                TABLE.c.status == PENDING,
                TABLE.c.locked_until == bindparam("b_lease"),
            )
            .values(**values)
        )
        await session.execute(stmt, params)
    return {o.msg_id for o in kept}


@dataclass(frozen=True)
class Hold:
    """A rate-limited destination's queue: its rows of `kinds` wait until `until`."""

    destination: str
    kinds: tuple[str, ...]
    until: datetime


async def hold(session: AsyncSession, holds: Sequence[Hold], now: datetime) -> int:
    """Make each destination's due rows of the held kinds that no worker leases due at
    its `until` instead, in the caller's transaction; returns how many.

    Only `next_at` moves (no attempt is burned) and only later, and they stay in id
    order among themselves. A row another round leased, or one a retry or an earlier
    hold already made due later, is left alone."""
    at = naive(now)
    moved = 0
    for h in holds:
        until = naive(h.until)
        stmt = (
            update(TABLE)
            .where(
                TABLE.c.destination == h.destination,
                TABLE.c.status == PENDING,
                TABLE.c.kind.in_(h.kinds),
                TABLE.c.next_at <= at,
                TABLE.c.next_at < until,
                or_(TABLE.c.locked_until.is_(None), TABLE.c.locked_until < at),
            )
            .values(next_at=until)
        )
        result: Any = await session.execute(stmt)
        moved += int(result.rowcount or 0)
    return moved


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
