"""Taobao/Tmall end to end against the fake TOP gateway, on both engines: a TMC message ->
the refund detail -> a case at its tier -> the decision -> the TOP call once, through a
timeout; TMC confirms only what is stored; a message lost in a crash comes back and is
handled once; what can never apply is confirmed and reported; older details lose."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from bot.app import POLLS, create_app
from bot.appkeys import CTX, DISPATCH, WORKER
from storage.db import Database
from storage.models import Case, OutboxMessage
from tests.fakes.taobao import SELLER_NICK, FakeTop, running_top, taobao_settings
from tests.http.generic_cases import approve
from tests.support import Client, FakeClock, MakeClient, table_counts

SELLER = SELLER_NICK
REFUND = "123456789012345678901"  # > 2^53
CREATED = "taobao_refund_RefundCreated"


@pytest.fixture
async def fake(clock: FakeClock) -> AsyncIterator[FakeTop]:
    async with running_top(clock) as server:
        yield server


@pytest.fixture
async def app_client(
    db: Database, tmp_path: Path, clock: FakeClock, fake: FakeTop, aiohttp_client: MakeClient
) -> Client:
    settings = taobao_settings(tmp_path, db.url, fake.url)
    return await aiohttp_client(create_app(settings, clock=clock, background=False))


def refund(
    fee: str, *, returns: bool = False, version: int = 1732154700000, **more: Any
) -> dict[str, Any]:
    found = {"refund_id": REFUND, "tid": "3725362658812595205", "buyer_nick": "b**",
             "buyer_open_uid": "AAHbuyer", "seller_nick": SELLER, "status": "WAIT_SELLER_AGREE",
             "created": "2026-11-23 09:00:00", "modified": "2026-11-23 09:00:00",
             "refund_fee": fee, "has_good_return": returns, "reason": "质量问题",
             "title": "自动喂食器", "price": fee, "num": 1, "outer_id": "FEEDER-2",
             "refund_version": version, "refund_phase": "aftersale"}  # fmt: skip
    found.update(more)
    return found


async def case_of(client: Client) -> Case | None:
    async with client.app[CTX].db.read() as session:
        query = select(Case).where(Case.channel == "taobao", Case.external_id == REFUND)
        return (await session.scalars(query)).first()


async def polled(client: Client) -> int:
    stored = await client.app[POLLS].run_once()
    await client.app[DISPATCH].idle()
    return stored


async def settle(client: Client, clock: FakeClock, rounds: int = 3) -> None:
    for _ in range(rounds):
        await client.app[WORKER].drain()
        clock.advance(1000)


async def test_refund_only_to_refunded_once_through_a_timeout(
    app_client: Client, fake: FakeTop, clock: FakeClock
) -> None:
    fake.refunds[REFUND] = refund("132.00")
    fake.push(CREATED, {"refund_id": int(REFUND), "tid": 3725362658812595205}, nick=SELLER)
    assert await polled(app_client) == 1
    case = await case_of(app_client)
    assert case is not None
    assert (case.status, case.tier, case.amount_fen, case.order_id) == (
        "pending_approval", "cs_lead", 13200, "3725362658812595205",
    )  # fmt: skip
    assert case.channel_version == "1732154700000" and case.shop == SELLER
    clock.advance(2)
    assert await polled(app_client) == 0  # this run confirms what the last one stored
    assert fake.queue == {}
    await approve(app_client, case.id, "王组长")
    fake.slow_next = [0, 2.0]  # the detail read answers, then agree times out
    await settle(app_client, clock)
    agreed = fake.calls_of("taobao.rp.refunds.agree")
    assert [c["refund_infos"] for c in agreed] == [f"{REFUND}|13200|1732154700000|aftersale"]
    refreshed = await case_of(app_client)
    assert refreshed is not None and refreshed.status == "refunded"


async def test_a_return_is_agreed_then_refused_calls_nothing_twice(
    app_client: Client, fake: FakeTop, clock: FakeClock
) -> None:
    fake.refunds[REFUND] = refund("2880.00", returns=True)
    fake.push(CREATED, {"refund_id": REFUND}, nick=SELLER)
    await polled(app_client)
    case = await case_of(app_client)
    assert case is not None and case.kind == "return_refund" and case.tier == "director"
    await approve(app_client, case.id, "李总监")
    await settle(app_client, clock)
    assert len(fake.calls_of("taobao.rp.returngoods.agree")) == 1
    assert fake.refunds[REFUND]["status"] == "WAIT_BUYER_RETURN_GOODS"


async def test_a_message_lost_in_a_crash_comes_back_and_is_handled_once(
    app_client: Client, fake: FakeTop, clock: FakeClock
) -> None:
    fake.refunds[REFUND] = refund("29.90")
    fake.push(CREATED, {"refund_id": REFUND}, nick=SELLER)
    [poller] = [p for p in app_client.app[POLLS].pollers if p.name.startswith("taobao:")]
    notices, _ = await poller.poll(None, clock())  # consumed, then the process died
    assert len(notices) == 1 and await case_of(app_client) is None
    clock.advance(61)  # TMC hands an unconfirmed message out again
    assert await polled(app_client) == 1
    clock.advance(61)
    await polled(app_client)
    assert await polled(app_client) == 0 and fake.queue == {}
    case = await case_of(app_client)
    assert case is not None and case.status in ("refund_pending", "refunded")  # auto tier


async def test_what_can_never_apply_is_confirmed_and_reported(
    app_client: Client, fake: FakeTop, clock: FakeClock
) -> None:
    db = app_client.app[CTX].db
    before = await table_counts(db)
    fake.queue.clear()
    fake.push(CREATED, {"tid": 1}, nick=SELLER)  # no refund id
    fake.push(CREATED, {"refund_id": REFUND}, nick="别人的店")  # a shop we do not serve
    fake.push("taobao_trade_TradeCreate", {"tid": 1}, nick=SELLER)  # a topic we skip
    assert await polled(app_client) == 0
    clock.advance(2)
    await polled(app_client)
    assert fake.queue == {}  # all confirmed: never redelivered forever
    after = await table_counts(db)
    assert after["cases"] == before["cases"]
    assert after["outbox"] - before["outbox"] >= 2  # the admins are told of both


async def test_an_older_detail_never_overwrites_a_newer_one(
    app_client: Client, fake: FakeTop, clock: FakeClock
) -> None:
    fake.refunds[REFUND] = refund("132.00", version=2000)
    fake.push(CREATED, {"refund_id": REFUND}, nick=SELLER)
    await polled(app_client)
    fake.refunds[REFUND] = refund("99.00", version=1000)  # a stale replica answers
    fake.push("taobao_refund_RefundBuyerModifyAgreement", {"refund_id": REFUND}, nick=SELLER)
    clock.advance(2)
    await polled(app_client)
    case = await case_of(app_client)
    assert case is not None and (case.amount_fen, case.channel_version) == (13200, "2000")


async def test_a_wrong_secret_is_refused_by_the_gateway_and_stores_nothing(
    db: Database, tmp_path: Path, clock: FakeClock, fake: FakeTop, aiohttp_client: MakeClient
) -> None:
    settings = taobao_settings(tmp_path, db.url, fake.url, app_secret="wrong")
    client = await aiohttp_client(create_app(settings, clock=clock, background=False))
    fake.refunds[REFUND] = refund("132.00")
    fake.push(CREATED, {"refund_id": REFUND}, nick=SELLER)
    before = await table_counts(db)
    assert await polled(client) == 0
    assert fake.refused and fake.refused[0].startswith("25 Invalid Signature")
    after = await table_counts(db)
    assert after.pop("leases") == 1  # the poll ran: it took its lease, and nothing else
    assert after == {k: v for k, v in before.items() if k != "leases"}


async def test_a_large_refund_waiting_for_the_sms_code_stays_queued_and_asks_once(
    app_client: Client, fake: FakeTop, clock: FakeClock
) -> None:
    db = app_client.app[CTX].db
    fake.sms_threshold_fen = 10_000
    fake.refunds[REFUND] = refund("132.00")
    fake.push(CREATED, {"refund_id": REFUND}, nick=SELLER)
    await polled(app_client)
    case = await case_of(app_client)
    assert case is not None
    await approve(app_client, case.id, "王组长")
    before = await table_counts(db)
    await settle(app_client, clock, rounds=4)
    assert len(fake.calls_of("taobao.rp.refunds.agree")) >= 2  # retried, not dead
    assert (await case_of(app_client)).status == "refund_pending"  # type: ignore[union-attr]
    async with db.read() as session:
        rows = list(await session.scalars(select(OutboxMessage)))
    alerts = [r for r in rows if "短信验证码" in json.dumps(r.payload, ensure_ascii=False)]
    assert len(alerts) == 1 and (await table_counts(db))["outbox"] > before["outbox"]
    assert not [r for r in rows if r.status == "dead"]
    fake.refunds[REFUND]["status"] = "SUCCESS"  # the seller agreed in 千牛 with the code
    await settle(app_client, clock, rounds=2)
    assert (await case_of(app_client)).status == "refunded"  # type: ignore[union-attr]
