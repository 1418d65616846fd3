"""Recorded chat texts and card clicks handled in batches (bot/dispatch.py `batched`,
handlers/inbox.py `once_each`): one transaction for whatever arrived meanwhile, each
event still once, a poisoned one failing alone and left for recovery."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncSession

from bot.dispatch import GRACE, HANDLE, SQLITE_HANDLING_BATCH, Dispatcher
from bot.events import ChatMessage
from handlers.actions import card_action
from handlers.commands import chat_message, on_chat_message
from handlers.context import Ctx
from handlers.inbox import DUPLICATE, Once, once_each
from handlers.intake import on_return_request
from storage.db import Database
from storage.models import InboxKey
from tests.unit.test_dispatch import counts, help_message, ticking
from tests.unit.test_flow import card_token, case_of, click, request, setup, texts_to
from tests.unit.test_writer import commits


def batching(ctx: Ctx) -> Dispatcher:
    """As the app wires it: texts handled in batches, alone when recovered."""
    return Dispatcher(ctx, {ChatMessage: on_chat_message}, batched={ChatMessage: chat_message})


async def test_a_burst_of_texts_is_handled_in_shared_transactions(db: Database) -> None:
    ctx, _ = await ticking(db)
    dispatcher = Dispatcher(
        ctx, {ChatMessage: on_chat_message}, batched={ChatMessage: chat_message}
    )
    with commits(db) as seen:
        answers = await asyncio.gather(*(dispatcher.accept(help_message(n)) for n in range(20)))
        await dispatcher.idle()
    assert answers == [True] * 20
    # Recorded in shared batches, then handled in shared batches: far fewer commits
    # than the one per event (plus the recording) the handlers took alone.
    assert len(seen) < 10
    assert await counts(db) == (0, 20, 20), "each handled once, its record gone"


async def test_on_sqlite_a_handling_batch_stays_small_so_acks_do_not_wait(
    db: Database,
) -> None:
    """SQLite's one write lock: the recording of new events (the acks) waits for the
    handling transaction that holds it, so handling takes a few events at a time."""
    ctx, _ = await ticking(db)
    dispatcher = batching(ctx)
    sizes: list[int] = []
    handle = dispatcher._handle_batch

    async def sized(session: AsyncSession, events: Sequence[Any]) -> list[Any]:
        sizes.append(len(events))
        return await handle(session, events)

    dispatcher.handling.register(HANDLE, sized)
    answers = await asyncio.gather(*(dispatcher.accept(help_message(n)) for n in range(20)))
    await dispatcher.idle()
    assert answers == [True] * 20 and sum(sizes) == 20
    if db.is_sqlite:
        assert max(sizes) <= SQLITE_HANDLING_BATCH < 20
    else:
        assert max(sizes) > SQLITE_HANDLING_BATCH, "PostgreSQL records beside a handling batch"
    assert await counts(db) == (0, 20, 20)


async def test_a_duplicate_in_one_batch_takes_effect_once(db: Database) -> None:
    ctx, _ = await ticking(db)
    async with db.transaction() as session:
        session.add(InboxKey(key=help_message(3).key, source="console", received_at=ctx.now()))
    events = [help_message(1), help_message(2), help_message(1), help_message(3)]
    async with db.transaction() as session:
        results = await once_each(session, ctx, [chat_message(e, ctx) for e in events])
    assert results == [None, None, DUPLICATE, DUPLICATE]
    assert await counts(db) == (0, 3, 2), "two texts answered; the handled key stays"


async def test_a_poisoned_event_fails_alone_and_is_recovered(db: Database) -> None:
    ctx, clock = await ticking(db)
    poisoned = help_message(3).key
    tries: list[str] = []

    def flaky(event: ChatMessage, ctx: Ctx) -> Once:
        job = chat_message(event, ctx)

        async def work(session: AsyncSession) -> Any:
            tries.append(event.key)
            if event.key == poisoned:
                raise RuntimeError("a handler bug")
            return await job.work(session)

        return Once(job.key, job.source, work)

    dispatcher = Dispatcher(ctx, {ChatMessage: on_chat_message}, batched={ChatMessage: flaky})
    answers = await asyncio.gather(*(dispatcher.accept(help_message(n)) for n in range(5)))
    await dispatcher.idle()
    assert answers == [True] * 5
    assert tries.count(poisoned) >= 1
    # The other four were handled (with the batch, or each alone after it failed); the
    # poisoned one's record stays, and nothing of it was written.
    assert await counts(db) == (1, 4, 4)
    clock.now += GRACE
    assert await dispatcher.recover() == 1  # recovery runs the real handler, alone
    assert await counts(db) == (0, 5, 5)


async def test_a_redelivery_after_its_batch_is_dropped(db: Database) -> None:
    ctx, _ = await ticking(db)
    dispatcher = Dispatcher(
        ctx, {ChatMessage: on_chat_message}, batched={ChatMessage: chat_message}
    )
    for _ in range(2):
        assert await dispatcher.accept(help_message(7))
        await dispatcher.idle()
    assert await counts(db) == (0, 1, 1)


async def test_two_clicks_on_one_case_in_one_batch_decide_once(db: Database) -> None:
    """The batch locks and reads the case once; the second click finds it decided (the
    case the first click left, not a stale copy) and is told who decided."""
    ctx = await setup(db)
    case_id = (await on_return_request(request(1, 13200), ctx)).case_id or ""
    clicks = [
        click(n, user, await card_token(db, case_id, user, "approve"))
        for n, user in ((1, "王组长"), (2, "刘组长"))
    ]
    statements: list[str] = []

    def seen(_conn: Any, _cursor: Any, sql: str, *_: Any) -> None:
        statements.append(" ".join(sql.split()))

    event.listen(db.engine.sync_engine, "before_cursor_execute", seen)
    try:
        async with db.transaction() as session:
            results = await once_each(session, ctx, [card_action(c, ctx) for c in clicks])
    finally:
        event.remove(db.engine.sync_engine, "before_cursor_execute", seen)
    assert results == [None, None]
    assert len([s for s in statements if s.startswith("SELECT cases.id")]) == 1
    assert (await case_of(db, case_id)).status == "refund_pending"
    assert any(t.startswith("已由 王组长 于") for t in await texts_to(db, "刘组长"))
