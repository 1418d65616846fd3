"""Ack, then work, and lose nothing: acknowledged events survive a failed handler, a
crash and a shutdown, and still take effect exactly once (bot/dispatch.py)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import func, select, text

from bot.dispatch import GRACE, MAX_ATTEMPTS, Dispatcher
from bot.events import ChatMessage, Sender
from handlers.commands import on_chat_message
from handlers.context import Ctx
from storage import inbound
from storage.db import Database
from storage.models import InboundEvent, InboxKey, OutboxMessage
from tests.conftest import ONLY_PG, PG_URL
from tests.unit.test_flow import setup
from tests.unit.test_writer import commits


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 11, 21, 2, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


def help_message(n: int = 1) -> ChatMessage:
    return ChatMessage(f"wecom:msg:{n}", Sender("console", "王组长"), "/帮助")


async def ticking(db: Database) -> tuple[Ctx, Clock]:
    clock = Clock()
    ctx = await setup(db)
    return Ctx(db=db, settings=ctx.settings, clock=clock, platforms=ctx.platforms), clock


async def counts(db: Database) -> tuple[int, int, int]:
    async with db.read() as session:
        inbound = await session.scalar(select(func.count()).select_from(InboundEvent))
        keys = await session.scalar(select(func.count()).select_from(InboxKey))
        replies = await session.scalar(select(func.count()).select_from(OutboxMessage))
    return int(inbound or 0), int(keys or 0), int(replies or 0)


async def test_an_accepted_event_is_recorded_then_handled_once(db: Database) -> None:
    ctx, _ = await ticking(db)
    dispatcher = Dispatcher(ctx, {ChatMessage: on_chat_message})
    assert await dispatcher.accept(help_message())
    assert await dispatcher.accept(help_message())  # a redelivery: acked, dropped
    await dispatcher.idle()
    assert await counts(db) == (0, 1, 1)
    assert await dispatcher.accept(help_message())  # even after it was handled
    await dispatcher.idle()
    assert await counts(db) == (0, 1, 1)


async def test_a_failed_handler_is_run_again_after_the_grace(db: Database) -> None:
    ctx, clock = await ticking(db)
    calls: list[str] = []

    async def flaky(event: ChatMessage, ctx: Ctx) -> Any:
        calls.append(event.key)
        if len(calls) == 1:
            raise RuntimeError("database went away mid-handler")
        return await on_chat_message(event, ctx)

    dispatcher = Dispatcher(ctx, {ChatMessage: flaky})
    await dispatcher.accept(help_message())
    await dispatcher.idle()
    assert await counts(db) == (1, 0, 0)
    assert await dispatcher.recover() == 0, "not before the grace"
    clock.now += GRACE
    assert await dispatcher.recover() == 1
    assert calls == ["wecom:msg:1"] * 2
    assert await counts(db) == (0, 1, 1)


async def test_an_event_acknowledged_before_a_crash_is_handled_after_restart(
    db: Database,
) -> None:
    ctx, clock = await ticking(db)
    started = asyncio.Event()

    async def hangs(event: ChatMessage, ctx: Ctx) -> None:
        started.set()
        await asyncio.Event().wait()  # the process dies while the handler runs

    before = Dispatcher(ctx, {ChatMessage: hangs})
    await before.accept(help_message())
    await started.wait()
    for task in list(before._tasks):  # the crash
        task.cancel()
    await asyncio.gather(*before._tasks, return_exceptions=True)
    assert await counts(db) == (1, 0, 0)

    after = Dispatcher(ctx, {ChatMessage: on_chat_message})  # the next start
    clock.now += GRACE
    assert await after.recover() == 1
    assert await counts(db) == (0, 1, 1)


async def test_an_event_that_always_fails_is_given_up_on(db: Database) -> None:
    ctx, clock = await ticking(db)

    async def broken(event: ChatMessage, ctx: Ctx) -> None:
        raise RuntimeError("bug")

    dispatcher = Dispatcher(ctx, {ChatMessage: broken})
    await dispatcher.accept(help_message())
    await dispatcher.idle()
    for _ in range(MAX_ATTEMPTS):
        clock.now += timedelta(days=1)
        assert await dispatcher.recover() == 1
    clock.now += timedelta(days=1)
    assert await dispatcher.recover() == 0
    async with db.read() as session:
        row = await session.get(InboundEvent, "wecom:msg:1")
    assert row is not None and row.status == "dead" and "bug" in row.last_error
    async with db.read() as session:
        alerts = list(
            await session.scalars(
                select(OutboxMessage.payload).where(OutboxMessage.destination == "console:管理员")
            )
        )
    assert len(alerts) == 1 and "wecom:msg:1" in alerts[0]["text"] and alerts[0]["alert"]


async def test_a_record_that_cannot_be_decoded_is_dead_not_a_crash_loop(db: Database) -> None:
    ctx, clock = await ticking(db)
    async with db.transaction() as session:
        session.add(
            InboundEvent(
                key="k",
                kind="unknown_kind",
                payload={},
                status="pending",
                attempts=0,
                next_at=clock().replace(tzinfo=None),
                received_at=clock().replace(tzinfo=None),
                last_error="",
            )
        )
    dispatcher = Dispatcher(ctx, {ChatMessage: on_chat_message})
    assert await dispatcher.recover() == 1
    async with db.read() as session:
        row = await session.get(InboundEvent, "k")
    assert row is not None and row.status == "dead"


async def test_shutdown_refuses_new_events(db: Database) -> None:
    ctx, _ = await ticking(db)
    dispatcher = Dispatcher(ctx, {ChatMessage: on_chat_message})
    await dispatcher.drain()
    assert not await dispatcher.accept(help_message())
    assert await counts(db) == (0, 0, 0)


@ONLY_PG
async def test_two_replicas_recover_each_event_once(db: Database) -> None:
    ctx, clock = await ticking(db)
    other_db = Database(PG_URL)
    other = Ctx(db=other_db, settings=ctx.settings, clock=clock, platforms=ctx.platforms)
    ran: list[str] = []

    async def counted(event: ChatMessage, ctx: Ctx) -> Any:
        ran.append(event.key)
        return await on_chat_message(event, ctx)

    async def never(event: ChatMessage, ctx: Ctx) -> None:
        raise RuntimeError("first try fails")

    first = Dispatcher(ctx, {ChatMessage: never})
    for n in range(20):
        await first.accept(help_message(n))
    await first.idle()
    clock.now += GRACE
    a = Dispatcher(ctx, {ChatMessage: counted}, concurrency=4)
    b = Dispatcher(other, {ChatMessage: counted}, concurrency=4)
    await asyncio.gather(
        a.recover(limit=7), b.recover(limit=7), a.recover(limit=7), b.recover(limit=7)
    )
    await other_db.dispose()
    assert sorted(ran) == sorted(set(ran)) and len(ran) == 20
    assert await counts(db) == (0, 20, 20)


async def test_the_same_delivery_racing_in_twice_is_recorded_once(db: Database) -> None:
    ctx, _ = await ticking(db)
    dispatcher = Dispatcher(ctx, {ChatMessage: on_chat_message})
    answers = await asyncio.gather(*(dispatcher.accept(help_message()) for _ in range(5)))
    await dispatcher.idle()
    assert answers == [True] * 5
    assert await counts(db) == (0, 1, 1)


async def test_concurrent_accepts_are_recorded_in_fewer_transactions(db: Database) -> None:
    ctx, _ = await ticking(db)
    ran: list[str] = []

    async def noted(event: ChatMessage, ctx: Ctx) -> None:  # commits nothing itself
        ran.append(event.key)

    dispatcher = Dispatcher(ctx, {ChatMessage: noted})
    with commits(db) as seen:
        answers = await asyncio.gather(*(dispatcher.accept(help_message(n)) for n in range(20)))
        await dispatcher.idle()
    assert answers == [True] * 20
    assert len(seen) < 20
    assert sorted(ran) == sorted(help_message(n).key for n in range(20))
    assert await counts(db) == (20, 0, 0), "each recorded, for recovery, before the ack"


async def test_a_batch_records_each_new_key_once(db: Database) -> None:
    ctx, clock = await ticking(db)

    def received(key: str) -> inbound.Received:
        return inbound.Received(key, "chat", {"n": key}, clock(), GRACE)

    async with db.transaction() as session:
        session.add(InboxKey(key="handled", source="wecom", received_at=ctx.now()))
        assert await inbound.put_many(session, [received("waiting")]) == [True]
    async with db.transaction() as session:
        fresh = await inbound.put_many(
            session,
            [received(k) for k in ("new", "new", "handled", "waiting", "other")],
        )
    assert fresh == [True, False, False, False, True]
    async with db.read() as session:
        rows = {row.key: row for row in await session.scalars(select(InboundEvent))}
    assert set(rows) == {"waiting", "new", "other"}
    assert rows["new"].payload == {"n": "new"} and rows["new"].status == "pending"
    assert rows["new"].next_at == ctx.now() + GRACE and rows["new"].attempts == 0


@ONLY_PG
async def test_a_redelivery_of_an_event_being_handled_is_answered_without_waiting(
    db: Database,
) -> None:
    """The handler's open transaction has deleted the waiting record: recording the
    redelivery must not wait for it (on PostgreSQL an INSERT of that key would, and
    the batch's other events with it). `lock_timeout` turns a wait into an error."""
    ctx, clock = await ticking(db)
    click = inbound.Received("wecom:click:1", "chat", {}, clock(), GRACE)
    async with db.transaction() as session:
        assert await inbound.put_many(session, [click]) == [True]
    async with db.transaction() as handling:
        await inbound.done(handling, click.key)  # the row is locked until this commits
        async with db.transaction() as session:
            await session.execute(text("SET LOCAL lock_timeout = '2s'"))
            assert await inbound.put_many(session, [click]) == [False]
        handling.add(InboxKey(key=click.key, source="wecom", received_at=ctx.now()))
    async with db.transaction() as session:
        assert await inbound.put_many(session, [click]) == [False], "handled: still known"
    assert await counts(db) == (0, 1, 0)


async def test_shutdown_records_what_the_writer_held_then_refuses(db: Database) -> None:
    ctx, _ = await ticking(db)
    dispatcher = Dispatcher(ctx, {ChatMessage: on_chat_message})
    pending = [asyncio.ensure_future(dispatcher.accept(help_message(n))) for n in range(3)]
    await asyncio.sleep(0)  # queued in the writer, not yet committed
    await dispatcher.drain()
    assert [p.result() for p in pending] == [True] * 3
    assert not await dispatcher.accept(help_message(9))
    assert await counts(db) == (0, 3, 3), "recorded, acked and handled before the stop"
