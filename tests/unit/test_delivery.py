"""What follows a delivery (bot/delivery.py): card handles, refund confirmation, alerts."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
from sqlalchemy import event, select

from bot.delivery import build_worker
from bot.outbox import PermanentError
from handlers import refunds
from handlers.intake import on_return_request
from storage import outbox_dead
from storage.db import Database
from storage.models import CardRecord, OutboxMessage
from tests.support import FakeClock
from tests.unit.test_flow import NOW, case_of, outbox, request, setup


async def test_handles_are_kept_and_a_confirmed_refund_is_refunded(db: Database) -> None:
    ctx = await setup(db)
    small = (await on_return_request(request(1, 2990), ctx)).case_id or ""
    await on_return_request(request(2, 13200), ctx)

    async def send_card(msg: OutboxMessage) -> dict[str, object]:
        return {"card_id": msg.payload["card_id"], "platform_ref": f"ref-{msg.id}"}

    async def nothing(msg: OutboxMessage) -> None:
        return None

    async def refund(msg: OutboxMessage) -> dict[str, object]:
        return {"confirmed": True}

    worker = build_worker(
        ctx, {"card.send": send_card, "channel.event": nothing, "channel.refund": refund}
    )
    await worker.drain()
    assert (await case_of(db, small)).status == "refunded"
    async with db.read() as session:
        refs = [r.platform_ref for r in await session.scalars(select(CardRecord))]
    assert len(refs) == 2 and all(ref.startswith("ref-") for ref in refs)


async def test_a_rounds_card_handles_are_read_in_one_select(db: Database) -> None:
    ctx = await setup(db)
    for n in range(3):
        await on_return_request(request(10 + n, 13200), ctx)  # a card to each CS lead
    statements: list[str] = []

    def seen(_conn: Any, _cursor: Any, sql: str, *_: Any) -> None:
        statements.append(" ".join(sql.split()))

    async def send_card(msg: OutboxMessage) -> dict[str, object]:
        return {"card_id": msg.payload["card_id"], "platform_ref": f"ref-{msg.id}"}

    worker = build_worker(ctx, {"card.send": send_card})
    event.listen(db.engine.sync_engine, "before_cursor_execute", seen)
    try:
        assert await worker.run_once() == 6
    finally:
        event.remove(db.engine.sync_engine, "before_cursor_execute", seen)
    reads = [s for s in statements if s.startswith("SELECT") and " FROM cards" in s]
    assert len(reads) == 1, reads  # the round's six cards, not one SELECT each
    async with db.read() as session:
        cards = list(await session.scalars(select(CardRecord)))
    sends = {m.payload["card_id"]: m.id for m in await outbox(db, "card.send")}
    assert len(cards) == 6
    assert all(card.platform_ref == f"ref-{sends[card.id]}" for card in cards)


async def test_a_rounds_confirmed_refunds_lock_their_cases_in_one_select(db: Database) -> None:
    ctx = await setup(db)
    small = [(await on_return_request(request(20 + n, 2990), ctx)).case_id for n in range(3)]
    statements: list[str] = []

    def seen(_conn: Any, _cursor: Any, sql: str, *_: Any) -> None:
        statements.append(" ".join(sql.split()))

    async def nothing(msg: OutboxMessage) -> None:
        return None

    async def refund(msg: OutboxMessage) -> dict[str, object]:
        return {"confirmed": True}

    worker = build_worker(ctx, {"channel.event": nothing, "channel.refund": refund})
    await worker.run_once()  # the approved events: each case's refund waits behind its own
    event.listen(db.engine.sync_engine, "before_cursor_execute", seen)
    try:
        assert await worker.run_once() == 3
    finally:
        event.remove(db.engine.sync_engine, "before_cursor_execute", seen)
    reads = [s for s in statements if s.startswith("SELECT cases.id")]
    assert len(reads) == 1, reads  # three refunded cases, locked in one statement
    assert [(await case_of(db, c or "")).status for c in small] == ["refunded"] * 3


async def test_a_dead_letter_alerts_the_admins_once(db: Database) -> None:
    ctx = await setup(db)
    case_id = (await on_return_request(request(3, 2990), ctx)).case_id or ""

    async def refuse(msg: OutboxMessage) -> None:
        raise PermanentError("HTTP 400 unknown order")

    worker = build_worker(
        ctx, {"channel.event": refuse, "channel.refund": refuse, "text.send": refuse}
    )
    await worker.drain()
    approved, refund = await outbox(db, "channel.event") + await outbox(db, "channel.refund")
    # The approved event died; the refund behind it is held, untried, so the OMS never
    # sees refund_released without the approval it follows. The alert says so.
    assert (approved.status, refund.status, refund.attempts) == ("dead", "pending", 0)
    [alert] = [m for m in await outbox(db, "text.send") if m.payload.get("alert")]
    assert alert.destination == "console:管理员"
    assert "后续 1 条消息已暂停" in alert.payload["text"]
    assert f"returnhub outbox discard {approved.id}" in alert.payload["text"]

    async with db.transaction() as session:  # the admin gives the approved event up
        assert await outbox_dead.discard(session, [approved.id]) == 1
    await worker.drain()
    alerts = [m for m in await outbox(db, "text.send") if m.payload.get("alert")]
    # Then the refund, and the 退款失败 notice to finance, died too: three alerts; the
    # alerts themselves died and raised nothing more.
    assert [m.destination for m in alerts] == ["console:管理员"] * 3
    assert all("死信" in m.payload["text"] for m in alerts)
    assert {m.status for m in alerts} == {"dead"}
    # The dead refund is reported to finance and the case does not pretend it was paid.
    case = await case_of(db, case_id)
    assert case.status == "refund_pending"
    texts = [m.payload["text"] for m in await outbox(db, "text.send")]
    assert any("退款失败" in t for t in texts)


class Crash(BaseException):
    """The process dies here (nothing after it runs, no handler catches it)."""


async def test_a_crash_after_a_confirmed_refund_loses_nothing(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The channel took the refund; the worker dies before the case is marked refunded.
    # Either both are recorded or neither: then the row is redelivered (the refund id
    # makes that a no-op on the far side) and the confirmation lands the second time.
    clock = FakeClock(NOW)
    ctx = dataclasses.replace(await setup(db), clock=clock)
    case_id = (await on_return_request(request(4, 2990), ctx)).case_id or ""
    real_fire, refunds_taken = refunds.fire, []

    def crash_once(*args: Any, **kwargs: Any) -> Any:
        if not refunds_taken[1:]:
            raise Crash
        return real_fire(*args, **kwargs)

    async def refund(msg: OutboxMessage) -> dict[str, object]:
        refunds_taken.append(msg.id)
        return {"confirmed": True}

    async def nothing(msg: OutboxMessage) -> None:
        return None

    monkeypatch.setattr(refunds, "fire", crash_once)
    worker = build_worker(ctx, {"channel.event": nothing, "channel.refund": refund})
    with pytest.raises(Crash):
        await worker.drain()
    clock.advance(ctx.settings.outbox.lease_seconds + 1)
    await worker.drain()
    assert (await case_of(db, case_id)).status == "refunded"
    assert len(refunds_taken) == 2 and len(set(refunds_taken)) == 1


async def test_a_revived_refund_that_dies_again_is_reported_again(db: Database) -> None:
    ctx = await setup(db)
    await on_return_request(request(5, 2990), ctx)

    async def refuse(msg: OutboxMessage) -> None:
        raise PermanentError("HTTP 400 refund window closed")

    async def nothing(msg: OutboxMessage) -> None:
        return None

    worker = build_worker(
        ctx, {"channel.event": nothing, "channel.refund": refuse, "text.send": nothing}
    )
    await worker.drain()
    async with db.transaction() as session:
        dead = [m.id for m in await outbox_dead.dead_letters(session)]
        assert await outbox_dead.revive(session, dead, now=NOW) == 1
    await worker.drain()
    texts = [m.payload["text"] for m in await outbox(db, "text.send")]
    assert len([t for t in texts if "退款失败" in t]) == 2
