"""JD end to end against the fake JOS router, on both engines: a refund application
polled by check time -> a case at its tier -> the decision -> replyRefund once, through a
timeout; the window's overlap and re-polls handle nothing twice; the cursor moves only
after what it covered is stored; a refused token stores nothing."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import select

from bot.app import POLLS, create_app
from bot.appkeys import CTX, DISPATCH, WORKER
from bot.channels.values import SHANGHAI
from bot.events import Sender
from handlers.approvals import decide
from handlers.people import member_named
from storage import channel_state
from storage.db import Database
from storage.models import Case
from tests.fakes.jd import REPLY, FakeJos, jd_settings, running_jos
from tests.http.generic_cases import approve
from tests.support import Client, FakeClock, MakeClient, table_counts

APPLY = "900000000000000001"
ORDER = "300000000000000001"


@pytest.fixture
async def fake(clock: FakeClock) -> AsyncIterator[FakeJos]:
    async with running_jos(clock) as server:
        yield server


@pytest.fixture
async def app_client(
    db: Database, tmp_path: Path, clock: FakeClock, fake: FakeJos, aiohttp_client: MakeClient
) -> Client:
    settings = jd_settings(tmp_path, db.url, fake.url)
    return await aiohttp_client(create_app(settings, clock=clock, background=False))


async def case_of(client: Client) -> Case | None:
    async with client.app[CTX].db.read() as session:
        query = select(Case).where(Case.channel == "jd", Case.external_id == APPLY)
        return (await session.scalars(query)).first()


async def polled(client: Client, clock: FakeClock) -> int:
    clock.advance(61)  # the poller's turn
    stored = await client.app[POLLS].run_once()
    await client.app[DISPATCH].idle()
    return stored


async def settle(client: Client, clock: FakeClock, rounds: int = 3) -> None:
    for _ in range(rounds):
        await client.app[WORKER].drain()
        clock.advance(1000)


async def test_an_application_to_an_approved_refund_once_through_a_timeout(
    app_client: Client, fake: FakeJos, clock: FakeClock
) -> None:
    fake.add(APPLY, ORDER, "132.00")
    assert await polled(app_client, clock) == 1
    case = await case_of(app_client)
    assert case is not None
    assert (case.status, case.tier, case.amount_fen, case.order_id, case.shop) == (
        "pending_approval", "cs_lead", 13200, ORDER, "jd-pets",
    )  # fmt: skip
    assert await polled(app_client, clock) == 1  # the overlap sees it again: same key
    await app_client.app[DISPATCH].idle()
    await approve(app_client, case.id, "王组长")
    fake.fail_next = [504]  # the first reply is lost on the way
    await settle(app_client, clock)
    assert fake.calls_of(REPLY) == [
        {"id": APPLY, "status": 1, "checkUserName": "returnhub", "remark": "同意退款"}
    ]
    refreshed = await case_of(app_client)
    assert refreshed is not None and refreshed.status == "refunded"
    async with app_client.app[CTX].db.read() as session:
        count = len(list(await session.scalars(select(Case).where(Case.channel == "jd"))))
    assert count == 1


async def test_a_rejection_carries_the_reason(
    app_client: Client, fake: FakeJos, clock: FakeClock
) -> None:
    fake.add(APPLY, ORDER, "132.00")
    await polled(app_client, clock)
    case = await case_of(app_client)
    assert case is not None
    ctx = app_client.app[CTX]
    async with ctx.db.transaction() as session:
        member = await member_named(session, "王组长")
        assert member is not None
        why = "已发货，请走退货流程"
        await decide(
            session, ctx, case.id, member, "reject", Sender("console", "王组长"), reason=why
        )
    await settle(app_client, clock)
    [call] = fake.calls_of(REPLY)
    assert (call["status"], call["remark"], call["rejectType"]) == (2, "已发货，请走退货流程", 5)


async def test_a_cancelled_application_closes_the_case(
    app_client: Client, fake: FakeJos, clock: FakeClock
) -> None:
    record = fake.add(APPLY, ORDER, "132.00")
    await polled(app_client, clock)
    clock.advance(30)
    record.update(status=11, checkTime=clock().astimezone(SHANGHAI).strftime("%Y-%m-%d %H:%M:%S"))
    await polled(app_client, clock)
    case = await case_of(app_client)
    assert case is not None and case.status == "closed"


async def test_the_cursor_moves_only_after_the_window_is_stored(
    app_client: Client, fake: FakeJos, clock: FakeClock
) -> None:
    db = app_client.app[CTX].db
    assert await polled(app_client, clock) == 0
    first = await channel_state.get(db, "cursor:jd:jd-pets")
    assert first is not None
    fake.fail_next = [503]
    fake.add(APPLY, ORDER, "132.00")
    assert await polled(app_client, clock) == 0  # the poll failed: nothing stored
    assert await channel_state.get(db, "cursor:jd:jd-pets") == first
    assert await polled(app_client, clock) == 1  # the same window, polled again


async def test_an_expired_token_stores_nothing_and_alerts_once(
    db: Database, tmp_path: Path, clock: FakeClock, fake: FakeJos, aiohttp_client: MakeClient
) -> None:
    settings = jd_settings(tmp_path, db.url, fake.url, access_token="expired")
    client = await aiohttp_client(create_app(settings, clock=clock, background=False))
    fake.add(APPLY, ORDER, "132.00")
    before = await table_counts(db)
    assert await polled(client, clock) == 0
    assert await polled(client, clock) == 0
    assert fake.refused[0].startswith("19 ")
    after = await table_counts(db)
    assert after["cases"] == before["cases"] == 0
    assert after["outbox"] - before["outbox"] == 1  # one alert to the admins, not two
