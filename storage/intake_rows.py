"""The Core statements of batch intake: a few per batch, whatever its size.

Each function runs one statement (an `IN (...)` lookup, an executemany insert,
`RETURNING` where the ids are needed) in the caller's transaction, except that
on SQLite the writes go STEP rows a statement: its writer runs on the event loop
(storage/sqlite_inline.py), a statement is one step of it, and an executemany of
a whole batch of 200 cases held it 15-20 ms, binding and executing every row. On
PostgreSQL a statement is a round trip the loop does not wait in: one a table.

The rows come from transient model objects the handlers decided
(handlers/create.py): their set attributes, the models' Python defaults for the
rest, as an ORM flush would write them.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Table, bindparam, delete, insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from storage.db import Database, next_counter_stmt
from storage.models import (
    Base,
    CardRecord,
    Case,
    Customer,
    InboundEvent,
    InboxKey,
    OutboxMessage,
)
from storage.models import Sequence as Counter
from storage.outbox import PENDING, naive

Triple = tuple[str, str, str]  # channel, shop, external_id
Buyer = tuple[str, str]  # channel, buyer_ref


def _default(table: Table, key: str) -> Any:
    column = table.c[key]
    default = column.default
    if default is None or not hasattr(default, "arg"):
        return None
    return default.arg(None) if callable(default.arg) else default.arg


def rows_of(objects: Iterable[Base], **fixed: Any) -> list[dict[str, Any]]:
    """Column values of transient objects of one model, with the same keys in each row
    (an executemany needs that): what each set, else the column's Python default."""
    objects = list(objects)
    if not objects:
        return []
    table: Table = objects[0].__table__  # type: ignore[assignment]
    keys = [
        c.key
        for c in table.columns
        if c.key in fixed
        or c.default is not None
        or any(c.key in o.__dict__ and o.__dict__[c.key] is not None for o in objects)
    ]
    out = []
    for obj in objects:
        values = obj.__dict__
        out.append(
            {
                k: fixed[k] if k in fixed else values[k] if k in values else _default(table, k)
                for k in keys
            }
        )
    return out


STEP = 50  # rows a write statement on SQLite


def _parts(session: AsyncSession, rows: Sequence[Any]) -> Iterable[list[Any]]:
    """`rows` STEP at a time on SQLite, all at once on PostgreSQL (none for no rows)."""
    size = STEP if session.get_bind().dialect.name == "sqlite" else max(1, len(rows))
    for start in range(0, len(rows), size):
        yield list(rows[start : start + size])


async def insert_rows(session: AsyncSession, table: Any, rows: Sequence[dict[str, Any]]) -> None:
    for part in _parts(session, rows):
        await session.execute(insert(table.__table__), part)


async def insert_ids(
    session: AsyncSession, table: Any, rows: Sequence[dict[str, Any]], natural: tuple[str, ...]
) -> list[int]:
    """Insert `rows` and return their new ids, in the order of `rows`.

    RETURNING comes back in no promised order (SQLite says so), and asking for
    parameter order makes SQLAlchemy insert row by row there, so the ids are
    matched to the rows by the `natural` columns, unique among `rows`.
    """
    if not rows:
        return []
    columns = [table.__table__.c[k] for k in natural]
    stmt = insert(table.__table__).returning(table.__table__.c.id, *columns)
    found: dict[tuple[Any, ...], int] = {}
    for part in _parts(session, rows):
        found |= {tuple(r[1:]): r[0] for r in await session.execute(stmt, part)}
    if len(found) != len(rows):
        raise ValueError(f"{natural} is not unique among the {table.__tablename__} rows")
    return [int(found[tuple(row[k] for k in natural)]) for row in rows]


async def inbound_done(session: AsyncSession, keys: Sequence[str]) -> None:
    """The acknowledged inbound records of the batch go with its effects."""
    await session.execute(delete(InboundEvent).where(InboundEvent.key.in_(keys)))


async def known_keys(session: AsyncSession, keys: Sequence[str]) -> set[str]:
    found = await session.scalars(select(InboxKey.key).where(InboxKey.key.in_(keys)))
    return set(found)


async def claim_keys(
    session: AsyncSession, keys: Sequence[tuple[str, str]], now: datetime
) -> None:
    """Inbox rows for (key, source): a concurrent delivery of one fails the batch here."""
    rows = [{"key": k, "source": s, "case_id": None, "received_at": now} for k, s in keys]
    await insert_rows(session, InboxKey, rows)


async def case_states(
    session: AsyncSession, triples: Iterable[Triple]
) -> dict[Triple, tuple[str, str]]:
    """(id, status) of the stored cases with these channel keys.

    All three columns are constrained, so uq_case_external serves the lookup (an
    IN on `external_id` alone, its last column, scans the whole table on SQLite)."""
    wanted = set(triples)
    if not wanted:
        return {}
    rows = await session.execute(
        select(Case.channel, Case.shop, Case.external_id, Case.id, Case.status).where(
            Case.channel.in_({t[0] for t in wanted}),
            Case.shop.in_({t[1] for t in wanted}),
            Case.external_id.in_({t[2] for t in wanted}),
        )
    )
    return {(c, s, e): (i, st) for c, s, e, i, st in rows if (c, s, e) in wanted}


async def customer_flags(session: AsyncSession, buyers: dict[Buyer, str]) -> dict[Buyer, bool]:
    """Whether each buyer is flagged; the unknown ones are stored (with `buyers`' nick)."""
    if not buyers:
        return {}
    rows = await session.execute(
        select(Customer.channel, Customer.buyer_ref, Customer.flagged).where(
            Customer.channel.in_({b[0] for b in buyers}),
            Customer.buyer_ref.in_({b[1] for b in buyers}),
        )
    )
    flags = {(c, r): bool(f) for c, r, f in rows if (c, r) in buyers}
    missing = [
        {"channel": c, "buyer_ref": r, "nick": nick, "flagged": False, "flag_reason": ""}
        for (c, r), nick in buyers.items()
        if (c, r) not in flags
    ]
    await insert_rows(session, Customer, missing)
    return {b: flags.get(b, False) for b in buyers}


async def reserve(session: AsyncSession, db: Database, name: str, count: int) -> int:
    """Reserve `count` values of counter `name`; returns the first."""
    last = (await session.execute(next_counter_stmt(db, Counter, name, count))).scalar_one()
    return int(last) - count + 1


async def insert_cards(session: AsyncSession, records: Sequence[CardRecord]) -> list[int]:
    """The card records' ids: within a batch one case's step has one card per recipient."""
    natural = ("case_id", "step_id", "kind", "platform", "recipient")
    return await insert_ids(session, CardRecord, rows_of(records), natural)


async def set_cards(session: AsyncSession, cards: Sequence[tuple[int, dict[str, Any]]]) -> None:
    """Each card record's card, once built for its id."""
    if not cards:
        return
    table: Any = CardRecord.__table__
    stmt = update(table).where(table.c.id == bindparam("card_id")).values(card=bindparam("built"))
    for part in _parts(session, cards):
        await session.execute(stmt, [{"card_id": i, "built": c} for i, c in part])


def outbox_row(
    kind: str, destination: str, payload: dict[str, Any], case_id: str | None, now: datetime
) -> dict[str, Any]:
    """The row storage.outbox.enqueue would add, due now."""
    at = naive(now)
    return {
        "kind": kind,
        "destination": destination,
        "case_id": case_id,
        "payload": payload,
        "status": PENDING,
        "attempts": 0,
        "next_at": at,
        "locked_until": None,
        "last_error": "",
        "created_at": at,
    }


async def insert_outbox(session: AsyncSession, rows: Sequence[dict[str, Any]]) -> None:
    await insert_rows(session, OutboxMessage, rows)
