"""`apply_requests`: a batch of channel events in the caller's transaction, on both engines.

A batch opens its new cases with a handful of Core statements and must leave the
same rows as the same events one at a time; keys are once-only inside the batch
and against the table; updates to a case opened earlier in the batch apply after
it, in order; and a failing event fails the batch, leaving nothing behind.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import delete, event, func, select

from bot.events import ReturnRequest
from handlers.context import Ctx, naive_utc
from handlers.intake import apply_requests, on_return_request
from handlers.revise import Refused
from handlers.tokens import sign
from storage import intake_rows
from storage.db import Database
from storage.models import (
    ApprovalStep,
    AuditEvent,
    Base,
    Case,
    Customer,
    CustomerOrder,
    InboxKey,
    Member,
    MemberRole,
    ServerSecret,
)
from tests.support import table_counts
from tests.unit.test_flow import NOW, request, setup

AMOUNTS = (2990, 13200, 288000, 600000)  # auto, cs lead, ops director (history), + finance
KEEP = {Member.__tablename__, MemberRole.__tablename__, ServerSecret.__tablename__}
# ids, the tokens bound to them, send nonces
VOLATILE = {"id", "step_id", "card_id", "customer_id", "token", "send"}


def mixed(n: int) -> ReturnRequest:
    """A new case of every tier in turn, both kinds, repeat buyers (one flagged), some
    with evidence or raised by a member."""
    kw: dict[str, Any] = {"buyer_ref": f"buyer-{n % 7}"}
    if n % 5 == 0:
        kw["evidence"] = (f"https://img.example/{n}.jpg",)
    if n % 6 == 0:
        kw["operator"] = "王组长"
    kind = "return_refund" if n % 3 == 0 else "refund_only"
    return request(n, AMOUNTS[n % len(AMOUNTS)], kind, **kw)


async def seed(db: Database) -> None:
    """Earlier history: buyer-1 has orders and a stored return, buyer-2 is flagged."""
    async with db.transaction() as session:
        regular = Customer(channel="generic", buyer_ref="buyer-1", nick="老客")
        flagged = Customer(channel="generic", buyer_ref="buyer-2", flagged=True, flag_reason="x")
        session.add_all([regular, flagged])
        await session.flush()
        session.add(
            CustomerOrder(
                customer_id=regular.id,
                order_id="SO-old",
                amount_fen=50000,
                ordered_at=naive_utc(NOW) - timedelta(days=40),
            )
        )


async def snapshot(db: Database, ctx: Ctx) -> dict[str, list[Any]]:
    """Every row but the members', in id order, without ids, tokens and send nonces;
    what an id linked (a card's step, an outbox row's card, a token's card) is
    checked first and kept as what it names."""
    out: dict[str, list[Any]] = {}
    async with db.read() as session:
        raw = {}
        for table in Base.metadata.sorted_tables:
            if table.name in KEEP or table.name == "alembic_version":
                continue
            order = [table.c.id] if "id" in table.c else list(table.primary_key.columns)
            rows = await session.execute(select(table).order_by(*order))
            raw[table.name] = [dict(r._mapping) for r in rows]
    steps = {s["id"]: (s["case_id"], s["seq"]) for s in raw["approval_steps"]}
    cards = {}
    for card in raw["cards"]:
        for button in card["card"].get("buttons", ()):
            assert button["token"] == sign(
                ctx.keyring, card["id"], card["case_id"], button["action"]
            )
        card["step"] = steps.get(card["step_id"])
        cards[card["id"]] = (card["case_id"], card["step"], card["platform"], card["recipient"])
    for row in raw["outbox"]:
        if "card_id" in row["payload"]:
            row["card"] = cards[row["payload"]["card_id"]]
    for name, rows in raw.items():
        out[name] = [_strip(row) for row in rows]
    return out


def _strip(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _strip(v) for k, v in value.items() if k not in VOLATILE}
    if isinstance(value, list):
        return [_strip(v) for v in value]
    return value


async def wipe(db: Database) -> None:
    async with db.transaction() as session:
        for table in reversed(Base.metadata.sorted_tables):
            if table.name not in KEEP:
                await session.execute(delete(table))


@contextmanager
def statements(db: Database) -> Iterator[list[str]]:
    seen: list[str] = []

    def count(_conn: Any, _cursor: Any, sql: str, *_: Any) -> None:
        seen.append(sql)

    event.listen(db.engine.sync_engine, "before_cursor_execute", count)
    try:
        yield seen
    finally:
        event.remove(db.engine.sync_engine, "before_cursor_execute", count)


async def batch(ctx: Ctx, events: list[ReturnRequest]) -> list[Any]:
    async with ctx.db.transaction() as session:
        return await apply_requests(session, ctx, events)


async def test_a_batch_of_new_cases_takes_a_few_statements_and_makes_the_same_rows(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    ctx = await setup(db)
    events = [mixed(n) for n in range(1, 51)]
    await seed(db)
    singles = [await on_return_request(e, ctx) for e in events]
    one_by_one = await snapshot(db, ctx)
    await wipe(db)
    await seed(db)
    monkeypatch.setattr(intake_rows, "STEP", 1_000)  # a write statement per table
    with statements(db) as seen:
        together = await batch(ctx, events)
    print("statements for the batch:", len(seen))
    assert len(seen) <= 25, seen
    assert [(r.case_id, r.status) for r in together] == [(r.case_id, r.status) for r in singles]
    assert {r.status for r in singles} >= {"pending_approval", "refund_pending", "awaiting_return"}
    assert await snapshot(db, ctx) == one_by_one
    assert len(one_by_one["cases"]) == 50 and len(one_by_one["cards"]) > 40
    # On SQLite written a few rows a statement: the same rows (ids matched to their rows).
    await wipe(db)
    await seed(db)
    monkeypatch.setattr(intake_rows, "STEP", 7)
    with statements(db) as seen:
        await batch(ctx, events)
    assert len(seen) > 25 + 10 if db.is_sqlite else len(seen) <= 25
    assert await snapshot(db, ctx) == one_by_one


async def test_a_key_twice_in_a_batch_and_one_already_handled_are_duplicates(
    db: Database,
) -> None:
    ctx = await setup(db)
    earlier = await on_return_request(request(1, 2990), ctx)
    results = await batch(ctx, [request(2, 13200), request(2, 13200), request(1, 2990)])
    assert [r.duplicate for r in results] == [False, True, True]
    assert results[1].case_id == results[0].case_id
    assert results[1].status == "pending_approval"
    assert (results[2].case_id, results[2].status) == (earlier.case_id, earlier.status)
    async with db.read() as session:
        assert await session.scalar(select(func.count(Case.id))) == 2
        assert await session.scalar(select(func.count(InboxKey.key))) == 2
        steps = await session.scalar(select(func.count(ApprovalStep.id)))
        assert steps == 1  # the duplicate opened nothing


async def test_updates_to_cases_opened_earlier_in_the_batch_apply_in_order(
    db: Database,
) -> None:
    ctx = await setup(db)
    events = [
        request(1, 13200),
        request(2, 2990, "return_refund"),
        request(1, 13200, key="generic:cancel-1", status="cancelled", version="2"),
        request(3, 13200),
        request(
            2,
            2990,
            "return_refund",
            key="generic:ship-2",
            status="buyer_shipped",
            version="2",
            return_waybill="SF123",
        ),
    ]
    results = await batch(ctx, events)
    assert [r.status for r in results] == [
        "pending_approval",
        "awaiting_return",
        "closed",
        "pending_approval",
        "in_transit",
    ]
    assert results[2].case_id == results[0].case_id and results[4].case_id == results[1].case_id
    async with db.read() as session:
        first = list(
            await session.scalars(
                select(AuditEvent.action)
                .where(AuditEvent.case_id == results[0].case_id)
                .order_by(AuditEvent.id)
            )
        )
        steps = await session.scalars(
            select(ApprovalStep.state).where(ApprovalStep.case_id == results[0].case_id)
        )
        shipped = await session.get(Case, results[4].case_id)
        assert shipped is not None and shipped.return_waybill == "SF123"
        assert list(steps) == ["cancelled"]
    assert first == ["created", "route", "close"]


async def test_a_cancel_ahead_of_its_request_in_a_batch_makes_a_closed_case(
    db: Database,
) -> None:
    ctx = await setup(db)
    early = request(1, 13200, key="generic:cancel-1", status="cancelled", version="2")
    results = await batch(ctx, [early, request(1, 13200), request(2, 2990)])
    assert [(r.status, r.duplicate) for r in results] == [
        ("closed", False),
        ("closed", True),  # an older version of a closed case: ignored
        ("refund_pending", False),
    ]


async def test_a_failing_event_fails_the_batch_and_leaves_nothing_behind(db: Database) -> None:
    ctx = await setup(db)
    before = await table_counts(db)
    paid = request(1, 2990)  # auto-approved: the amount can no longer change
    late = request(1, 5990, key="generic:late-change", version="2")
    with pytest.raises(Refused):
        await batch(ctx, [request(2, 13200), paid, late, request(3, 288000)])
    assert await table_counts(db) == before
    alone = [await on_return_request(e, ctx) for e in (request(2, 13200), paid, late)]
    assert [bool(r.refused) for r in alone] == [False, False, True]
