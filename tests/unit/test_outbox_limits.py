"""Per-destination rate limits with several windows, and text coalescing (issue 6, item 2),
on both engines, with a recording sender and a hand-advanced clock."""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import func, select

from bot.delivery import WECOM_MEMBER_WINDOWS, chat_cost, chat_limits
from bot.outbox import OutboxWorker, RetryableError
from bot.outbox_limits import RateLimit, Window, merged, plan
from bot.platforms.wecom import TEXT_BYTES
from bot.platforms.wecom_robot import ROBOT_PREFIX
from bot.settings import OutboxSettings
from storage import outbox
from storage.db import Database
from storage.models import OutboxMessage
from tests.conftest import ONLY_PG
from tests.support import FakeClock
from tests.unit.test_outbox import rows

MEMBER = "wecom:xiaozhou"
MEMBER_LIMIT = {"wecom:": chat_limits(OutboxSettings())["wecom:"]}


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


class Sender:
    """Records what reaches the far side: (destination, kind, text or card id)."""

    def __init__(self, pause: float = 0) -> None:
        self.pause = pause
        self.sent: list[tuple[str, str, Any]] = []

    async def __call__(self, msg: OutboxMessage) -> None:
        await asyncio.sleep(self.pause)
        what = msg.payload.get("text", msg.payload.get("card_id"))
        self.sent.append((msg.destination, msg.kind, what))

    def performers(self) -> dict[str, Any]:
        return {"text.send": self, "card.send": self, "card.update": self}


async def put(
    db: Database, clock: FakeClock, *items: tuple[str, str, str], dest: str = MEMBER
) -> list[int]:
    """Rows (kind, case id, text or card id) to `dest`, written in this order."""
    async with db.transaction() as session:
        msgs = [
            outbox.enqueue(
                session,
                kind=kind,
                destination=dest,
                payload={"text": what} if kind == "text.send" else {"card_id": what},
                now=clock(),
                case_id=case,
            )
            for kind, case, what in items
        ]
    return [m.id for m in msgs]


async def sends_to(db: Database, dest: str = MEMBER) -> int:
    stmt = select(func.coalesce(func.sum(OutboxMessage.sends), 0)).where(
        OutboxMessage.destination == dest, OutboxMessage.status == "sent"
    )
    async with db.read() as session:
        return int(await session.scalar(stmt) or 0)


def test_wecom_members_get_both_windows_and_robots_theirs() -> None:
    limits = chat_limits(OutboxSettings(rate_per_minute=20))
    assert limits["wecom:"].windows == WECOM_MEMBER_WINDOWS == (Window(30, 60), Window(1000, 3600))
    assert limits[ROBOT_PREFIX].windows == (Window(20, 60),)
    cost = chat_cost(TEXT_BYTES)
    text = OutboxMessage(kind="text.send", payload={"text": "甲" * 1500})  # 4500 bytes
    assert [cost(text), cost(OutboxMessage(kind="card.send", payload={}))] == [3, 1]
    assert cost(OutboxMessage(kind="card.update", payload={})) == 0  # not a new message


async def test_every_window_holds_and_a_limited_row_waits_untouched(
    db: Database, clock: FakeClock
) -> None:
    ids = await put(db, clock, *(("card.send", f"RC-{n}", str(n)) for n in range(12)))
    other = await put(db, clock, ("card.send", "RC-x", "x"), dest="wecom:someone-else")
    sender = Sender()
    limits = {"wecom:": RateLimit((Window(3, 60), Window(5, 3600)))}
    worker = OutboxWorker(
        db, OutboxSettings(), sender.performers(), clock=clock, rate_limits=limits
    )
    start = clock()

    async def at(seconds: int) -> int:
        clock.set(start + timedelta(seconds=seconds))
        await worker.drain()
        return len([s for s in sender.sent if s[0] == MEMBER])

    assert await at(0) == 3  # the minute window
    assert len(sender.sent) == 4  # another member has budgets of their own
    assert await at(59) == 3
    assert await at(60) == 5  # the minute reopened, the hour allows two more
    assert await at(120) == 5
    assert await at(3599) == 5
    assert await at(3600) == 8  # the first three left the hour
    assert await at(3660) == 10
    assert await at(7200) == 12
    assert {(r.status, r.attempts) for r in await rows(db)} == {("sent", 1)}  # none burned
    assert [int(s[2]) for s in sender.sent if s[0] == MEMBER] == list(range(12))
    assert len(ids) + len(other) == len(sender.sent)


async def test_a_deferred_row_waits_for_the_window_without_an_attempt(
    db: Database, clock: FakeClock
) -> None:
    await put(db, clock, *(("card.send", f"RC-{n}", str(n)) for n in range(3)))
    limits = {"wecom:": RateLimit((Window(2, 60),))}
    worker = OutboxWorker(
        db, OutboxSettings(), Sender().performers(), clock=clock, rate_limits=limits
    )
    await worker.drain()
    waiting = [r for r in await rows(db) if r.status == "pending"]
    assert [(r.attempts, r.last_error) for r in waiting] == [(0, "")]
    assert waiting[0].next_at == outbox.naive(clock() + timedelta(seconds=60))


async def test_a_long_text_spends_one_message_per_piece(db: Database, clock: FakeClock) -> None:
    long = "x" * (2 * TEXT_BYTES + 10)  # the adapter sends it as three messages
    await put(db, clock, ("text.send", "RC-1", long), ("text.send", "RC-2", long))
    limits = {"wecom:": RateLimit((Window(4, 60),), chat_cost(TEXT_BYTES), TEXT_BYTES)}
    sender = Sender()
    worker = OutboxWorker(
        db, OutboxSettings(), sender.performers(), clock=clock, rate_limits=limits
    )
    await worker.drain()
    assert len(sender.sent) == 1 and await sends_to(db) == 3  # 3 + 3 would exceed 4
    clock.advance(60)
    await worker.drain()
    assert len(sender.sent) == 2 and await sends_to(db) == 6


def test_the_plan_coalesces_texts_only_past_other_cases_rows() -> None:
    def row(n: int, kind: str, case: str | None, text: str = "") -> OutboxMessage:
        payload = {"text": text} if kind == "text.send" else {"card_id": n}
        return OutboxMessage(id=n, kind=kind, destination=MEMBER, case_id=case, payload=payload)

    msgs = [
        row(1, "text.send", "A", "a1"),
        row(2, "card.send", "B"),
        row(3, "text.send", "C", "c1"),  # joins 1: passes B's card only
        row(4, "text.send", "B", "b2"),  # would pass B's card: starts a new message
        row(5, "text.send", "A", "a2"),  # joins 4
        row(6, "card.send", "A"),  # cards never coalesce
        row(7, "text.send", "D", "d" * 1500),  # joins 4: fits in 2048 bytes
        row(8, "text.send", "E", "e" * 1000),  # would not fit: a message of its own
        row(9, "text.send", "F", "f" * 3000),  # over the limit alone: alone, split later
        row(10, "text.send", None, "no case"),
    ]
    assert [[m.id for m in send] for send in plan(msgs, TEXT_BYTES)] == [
        [1, 3],
        [2],
        [4, 5, 7],
        [6],
        [8],
        [9],
        [10],
    ]
    assert [[m.id for m in send] for send in plan(msgs, 0)] == [[m.id] for m in msgs]

    alert = row(11, "text.send", "A", "x")
    alert.payload["alert"] = True
    extra = row(12, "text.send", "A", "y")
    extra.payload["mentioned"] = ["@all"]  # anything but plain text goes alone
    assert [[m.id for m in s] for s in plan([msgs[0], alert, extra], TEXT_BYTES)] == [
        [1, 11],
        [12],
    ]


def test_retried_texts_coalesce_only_with_retried_ones() -> None:
    """Texts A and B went out as one message and the worker died before recording
    it: both come back as retries and coalesce as before, so WeCom's duplicate check
    sees the same message; a fresh text C goes apart, never inside the copy."""

    def text(n: int, attempts: int) -> OutboxMessage:
        return OutboxMessage(id=n, kind="text.send", destination=MEMBER, case_id=f"RC-{n}",
                             payload={"text": f"t{n}"}, attempts=attempts)  # fmt: skip

    sends = plan([text(1, 1), text(2, 1), text(3, 0), text(4, 0), text(5, 2)], TEXT_BYTES)
    assert [[m.id for m in send] for send in sends] == [[1, 2], [3, 4], [5]]
    assert merged(sends[0]).attempts == 1 and merged(sends[0]).payload == {"text": "t1\n\nt2"}


async def test_waiting_texts_go_as_one_message_and_each_row_is_delivered(
    db: Database, clock: FakeClock
) -> None:
    ids = await put(
        db,
        clock,
        ("text.send", "RC-A", "RC-A 已收货"),
        ("card.send", "RC-B", "card-b"),
        ("text.send", "RC-C", "RC-C 已收货"),
        ("text.send", "RC-B", "RC-B 请验货"),
        ("text.send", "RC-A", "RC-A 请验货"),
    )
    sender = Sender()
    worker = OutboxWorker(
        db, OutboxSettings(), sender.performers(), clock=clock, rate_limits=MEMBER_LIMIT
    )
    await worker.drain()
    assert sender.sent == [
        (MEMBER, "text.send", "RC-A 已收货\n\nRC-C 已收货"),
        (MEMBER, "card.send", "card-b"),
        (MEMBER, "text.send", "RC-B 请验货\n\nRC-A 请验货"),
    ]
    done = await rows(db)
    assert [(r.id, r.status, r.attempts) for r in done] == [(i, "sent", 1) for i in ids]
    assert [r.sends for r in done] == [1, 1, 0, 1, 0]  # three messages spent, not five
    assert len({r.sent_at for r in done}) == 1


async def test_a_coalesced_message_that_fails_retries_every_row(
    db: Database, clock: FakeClock
) -> None:
    await put(db, clock, ("text.send", "RC-A", "a"), ("text.send", "RC-B", "b"))
    calls: list[str] = []

    async def down(msg: OutboxMessage) -> None:
        calls.append(msg.payload["text"])
        if len(calls) == 1:
            raise RetryableError("wecom 502")

    worker = OutboxWorker(
        db, OutboxSettings(), {"text.send": down}, clock=clock, rate_limits=MEMBER_LIMIT
    )
    await worker.drain()
    assert [(r.status, r.attempts) for r in await rows(db)] == [("pending", 1)] * 2
    clock.advance(600)
    await worker.drain()
    assert calls == ["a\n\nb", "a\n\nb"]
    assert [(r.status, r.attempts) for r in await rows(db)] == [("sent", 2)] * 2


async def _two_workers_race(db: Database, second: Database, clock: FakeClock) -> list[int]:
    await put(db, clock, *(("card.send", f"RC-{n}", str(n)) for n in range(20)))
    limits = {"wecom:": RateLimit((Window(5, 60),))}
    senders = [Sender(pause=0.01), Sender(pause=0.01)]
    workers = [
        OutboxWorker(
            base, OutboxSettings(batch=4), s.performers(), clock=clock, rate_limits=limits
        )
        for base, s in zip((db, second), senders, strict=True)
    ]
    counts = []
    for _ in range(4):
        await asyncio.gather(*(w.drain() for w in workers))
        counts.append(sum(len(s.sent) for s in senders))
        clock.advance(60)
    return counts


async def test_two_workers_never_exceed_a_window(db: Database, clock: FakeClock) -> None:
    # Each claims a batch of 4 rows to the same member: only one may send to it at a
    # time, or both would check the same count and together exceed it.
    assert await _two_workers_race(db, db, clock) == [5, 10, 15, 20]


@ONLY_PG
async def test_two_pg_replicas_never_exceed_a_window(db: Database, clock: FakeClock) -> None:
    second = Database(db.url)
    try:
        assert await _two_workers_race(db, second, clock) == [5, 10, 15, 20]
    finally:
        await second.dispose()


class Claims:
    """Counts how often each row is claimed."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.times: Counter[int] = Counter()
        real = outbox.claim_due

        async def counted(*args: Any, **kwargs: Any) -> list[OutboxMessage]:
            got = await real(*args, **kwargs)
            self.times.update(m.id for m in got)
            return got

        monkeypatch.setattr(outbox, "claim_due", counted)


async def test_a_queue_behind_a_full_window_is_due_only_when_it_can_go(
    db: Database, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Deferred rows take successive slots, and the unclaimed rest waits behind them,
    so no round claims a row only to defer it again (the backlog does not churn)."""
    ids = await put(db, clock, *(("card.send", f"RC-{n}", str(n)) for n in range(20)))
    update = await put(db, clock, ("card.update", "RC-u", "u"))  # costs nothing: never held
    claims = Claims(monkeypatch)
    sender = Sender()
    limits = {"wecom:": RateLimit((Window(2, 60),), chat_cost(TEXT_BYTES))}
    worker = OutboxWorker(
        db, OutboxSettings(batch=5), sender.performers(), clock=clock, rate_limits=limits
    )
    start = outbox.naive(clock())

    async def due() -> dict[int, int]:
        return {
            r.id: int((r.next_at - start).total_seconds())
            for r in await rows(db)
            if r.status == "pending"
        }

    def cards() -> list[str]:
        return [s[2] for s in sender.sent if s[1] == "card.send"]

    await worker.drain()
    assert cards() == ["0", "1"]
    assert ("wecom:xiaozhou", "card.update", "u") in sender.sent  # costs nothing: not held
    waits = {ids[2]: 60, ids[3]: 60, ids[4]: 120} | {i: 120 for i in ids[5:]}
    assert await due() == waits  # 3 and 4 share the minute the first two sent free
    clock.advance(59)
    await worker.drain()
    assert cards() == ["0", "1"] and await due() == waits  # nothing was due
    clock.advance(1)
    await worker.drain()
    assert cards() == ["0", "1", "2", "3"]
    assert await due() == {i: at for i, at in waits.items() if i not in ids[:4]}
    for _ in range(20):
        clock.advance(60)
        await worker.drain()
    assert cards() == [str(n) for n in range(20)]
    assert {(r.status, r.attempts) for r in await rows(db)} == {("sent", 1)}
    # A row is claimed when it goes, and at most once before, in the batch that
    # deferred it to its slot; a row queued behind that batch only when it goes.
    assert max(claims.times.values()) == 2 and claims.times[update[0]] == 1
    assert [claims.times[i] for i in ids[:10]] == [1, 1, 2, 2, 2, 1, 2, 2, 2, 1]


async def test_a_hold_leaves_leased_later_and_other_rows_alone(
    db: Database, clock: FakeClock
) -> None:
    (leased, later, text, card, other) = await put(
        db,
        clock,
        ("card.send", "RC-1", "1"),
        ("card.send", "RC-2", "2"),
        ("text.send", "RC-3", "3"),
        ("card.send", "RC-4", "4"),
    ) + await put(db, clock, ("card.send", "RC-5", "5"), dest="wecom:someone-else")
    now = outbox.naive(clock())
    soon, until = now + timedelta(seconds=30), now + timedelta(seconds=90)
    async with db.transaction() as session:
        rows_by_id = {r.id: r for r in await session.scalars(select(OutboxMessage))}
        rows_by_id[leased].locked_until = now + timedelta(seconds=60)
        rows_by_id[later].next_at = until + timedelta(seconds=60)
        rows_by_id[text].next_at = soon  # not due yet: not held
    async with db.transaction() as session:
        moved = await outbox.hold(session, [outbox.Hold(MEMBER, ("card.send",), until)], now)
    assert moved == 1
    after = {r.id: r.next_at for r in await rows(db)}
    assert after == {
        leased: now,
        later: until + timedelta(seconds=60),
        text: soon,
        card: until,
        other: now,
    }
