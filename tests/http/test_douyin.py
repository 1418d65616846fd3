"""抖店 end to end against the fake open platform, on both engines: push -> detail ->
case at its tier -> decision -> `afterSale/operate` once, through timeouts and lost
answers; bad signatures, body variants, the tag-0 ping, out-of-order pushes, the
buyer's shipment and cancel, token refresh."""

from __future__ import annotations

import asyncio
import hmac
import json
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from sqlalchemy import select

from bot.app import POLLS, create_app
from bot.appkeys import CTX, DISPATCH, WORKER
from bot.channels.douyin_api import DouyinApi
from bot.channels.douyin_push import TAGS
from bot.channels.polling import PollRunner
from bot.channels.shops import douyin_shops
from bot.events import Sender
from handlers.approvals import decide
from handlers.people import member_named
from storage import channel_state
from storage.db import Database
from storage.models import CardRecord, Case, InboundEvent, OutboxMessage
from tests.fakes.douyin import (
    ADDRESS_ID,
    APP_KEY,
    APP_SECRET,
    REJECT_CODE,
    SHOP_ID,
    FakeDouyin,
    douyin_settings,
    push_sign,
    running_douyin,
)
from tests.http.generic_cases import approve
from tests.support import Client, FakeClock, MakeClient, table_counts

AS = "7200000000000000001"  # > 2^53: kept as a string end to end
T0 = 1_800_000_000
SUCCESS = {"code": 0, "msg": "success"}


@pytest.fixture
async def fake(clock: FakeClock) -> AsyncIterator[FakeDouyin]:
    async with running_douyin(clock) as server:
        yield server


@pytest.fixture
async def app_client(
    db: Database, tmp_path: Path, clock: FakeClock, fake: FakeDouyin, aiohttp_client: MakeClient
) -> Client:
    settings = douyin_settings(tmp_path, db.url, fake.url)
    return await aiohttp_client(create_app(settings, clock=clock, background=False))


async def case_of(client: Client, external_id: str = AS) -> Case | None:
    async with client.app[CTX].db.read() as session:
        query = select(Case).where(Case.channel == "douyin", Case.external_id == external_id)
        return (await session.scalars(query)).first()


async def pushed(client: Client, fake: FakeDouyin, tag: int, msg_id: str) -> Case:
    status, answer = await fake.push(client, [fake.message(tag, AS, msg_id)])
    assert (status, answer) == (200, SUCCESS)
    await client.app[DISPATCH].idle()
    case = await case_of(client)
    assert case is not None
    return case


async def settle(client: Client, clock: FakeClock, rounds: int = 3) -> None:
    for _ in range(rounds):
        await client.app[WORKER].drain()
        clock.advance(1000)  # past the longest backoff


@pytest.mark.parametrize("failure", ["timeout", "drop"])
async def test_refund_only_request_to_refund_once(
    app_client: Client, fake: FakeDouyin, clock: FakeClock, failure: str
) -> None:
    fake.add(AS, amount=13200, kind=1, update_time=T0)
    case = await pushed(app_client, fake, 200, "m-200")
    assert (case.status, case.tier, case.amount_fen) == ("pending_approval", "cs_lead", 13200)
    assert (case.shop, case.order_id, case.channel_version) == (
        SHOP_ID,
        "4705288465508532862",
        str(T0),
    )
    await approve(app_client, case.id, "王组长")
    fake.fail_next("afterSale/operate", failure)
    await settle(app_client, clock)
    # Applied exactly once, with the version the decision was taken on.
    assert fake.operations == [(201, {"aftersale_id": AS, "update_time": T0})]
    refreshed = await case_of(app_client)
    assert refreshed is not None and refreshed.status == "refunded"


async def test_return_is_agreed_with_the_address_then_shipped_then_refunded(
    app_client: Client, fake: FakeDouyin, clock: FakeClock
) -> None:
    fake.add(AS, amount=9900, kind=0, update_time=T0)
    case = await pushed(app_client, fake, 200, "m-1")
    await approve(app_client, case.id, "王组长")
    await settle(app_client, clock)
    assert fake.operations == [
        (
            101,
            {
                "aftersale_id": AS,
                "update_time": T0,
                "logistics": {"receiver_address_id": int(ADDRESS_ID)},
            },
        )
    ]
    case = await pushed(app_client, fake, 202, "m-2")  # the platform's echo: status 7
    assert case.status == "awaiting_return"
    fake.ship_back(AS, "SF1234567890", "顺丰速运")
    case = await pushed(app_client, fake, 203, "m-3")
    assert (case.status, case.return_waybill, case.carrier) == (
        "in_transit",
        "SF1234567890",
        "顺丰速运",
    )
    assert case.channel_version == str(fake.aftersales[AS]["update_time"])


async def test_buyer_cancel_closes_the_case_and_its_cards(
    app_client: Client, fake: FakeDouyin
) -> None:
    fake.add(AS, update_time=T0)
    case = await pushed(app_client, fake, 200, "m-1")
    fake.change(AS, after_sale_status=28, update_time=T0 + 100)
    case = await pushed(app_client, fake, 207, "m-2")
    assert case.status == "closed"
    async with app_client.app[CTX].db.read() as session:
        states = set(await session.scalars(select(CardRecord.state)))
    assert states == {"closed"}


async def test_an_older_push_handled_second_leaves_the_newer_state(
    app_client: Client, fake: FakeDouyin
) -> None:
    fake.add(AS, update_time=T0)
    fake.change(AS, after_sale_status=28, update_time=T0 + 50)  # already closed
    case = await pushed(app_client, fake, 207, "m-newer")
    assert (case.status, case.channel_version) == ("closed", str(T0 + 50))
    # A lagging replica of the platform answers the older state for the late push.
    fake.change(AS, after_sale_status=6, update_time=T0)
    case = await pushed(app_client, fake, 200, "m-older")
    assert (case.status, case.channel_version) == ("closed", str(T0 + 50))


async def test_a_batch_is_acknowledged_once_every_item_is_stored(
    app_client: Client, fake: FakeDouyin
) -> None:
    fake.add(AS, update_time=T0)
    fake.add("7200000000000000002", amount=2000, update_time=T0)
    batch = [fake.message(200, AS, "b-1"), fake.message(200, "7200000000000000002", "b-2")]
    status, answer = await fake.push(app_client, batch)
    assert (status, answer) == (200, SUCCESS)
    await app_client.app[DISPATCH].idle()
    small = await case_of(app_client, "7200000000000000002")
    big = await case_of(app_client)
    assert big is not None and big.status == "pending_approval"
    assert small is not None and small.status == "refund_pending"  # ≤ 50 yuan: automatic
    # The same batch again (the platform retries) is acknowledged and changes nothing.
    before = await table_counts(app_client.app[CTX].db)
    assert await fake.push(app_client, batch) == (200, SUCCESS)
    await app_client.app[DISPATCH].idle()
    assert await table_counts(app_client.app[CTX].db) == before


async def test_body_variants_msgid_int_tag_object_data(
    app_client: Client, fake: FakeDouyin
) -> None:
    fake.add(AS, update_time=T0)
    element = fake.message(200, AS, "v-1")
    variant = {"tag": 200, "msgId": "v-1", "data": json.loads(element["data"])}
    status, answer = await fake.push(app_client, [variant])
    assert (status, answer) == (200, SUCCESS)
    await app_client.app[DISPATCH].idle()
    assert await case_of(app_client) is not None


async def test_the_tag_0_ping_is_answered_and_stores_nothing(
    app_client: Client, fake: FakeDouyin
) -> None:
    before = await table_counts(app_client.app[CTX].db)
    status, answer = await fake.push(app_client, [{"tag": "0", "msg_id": "", "data": "{}"}])
    assert (status, answer) == (200, SUCCESS)
    assert await table_counts(app_client.app[CTX].db) == before


@pytest.mark.parametrize(
    "how", ["wrong secret", "no sign", "other app", "tampered body", "not json", "no shop"]
)
async def test_refused_pushes_store_nothing(
    app_client: Client, fake: FakeDouyin, how: str
) -> None:
    fake.add(AS, update_time=T0)
    before = await table_counts(app_client.app[CTX].db)
    raw = json.dumps([fake.message(200, AS, "x")]).encode()
    headers = {"app-id": "7300000000000000001", "event-sign": ""}
    if how == "wrong secret":
        status, _ = await fake.push(app_client, raw, secret="not-" + APP_SECRET)
    else:
        if how == "tampered body":
            headers["event-sign"] = push_sign(raw)
            raw = raw.replace(b"13200", b"99999")
        elif how == "other app":
            headers = {"app-id": "999", "event-sign": push_sign(raw, "999")}
        elif how == "not json":
            raw = b"[{"
            headers["event-sign"] = push_sign(raw)
        elif how == "no shop":
            raw = json.dumps([{"tag": "200", "msg_id": "x", "data": "{}"}]).encode()
            headers["event-sign"] = push_sign(raw)
        resp = await app_client.post("/webhooks/douyin", data=raw, headers=headers)
        status = resp.status
    assert 400 <= status < 500
    await app_client.app[DISPATCH].idle()
    assert await table_counts(app_client.app[CTX].db) == before


async def test_an_expired_token_is_refreshed_and_the_fetch_goes_on(
    app_client: Client, fake: FakeDouyin
) -> None:
    fake.add(AS, update_time=T0)
    fake.access_token = "rotated-by-the-platform"
    fake.refresh_token = "douyin-refresh-1"
    case = await pushed(app_client, fake, 200, "m-1")
    assert case.status == "pending_approval"
    assert "token/refresh" in fake.calls


async def test_an_api_outage_loses_no_notice(
    app_client: Client, fake: FakeDouyin, clock: FakeClock
) -> None:
    fake.add(AS, update_time=T0)
    fake.fail_next("afterSale/Detail", 20000)
    status, _ = await fake.push(app_client, [fake.message(200, AS, "m-1")])
    assert status == 200
    await app_client.app[DISPATCH].idle()
    assert await case_of(app_client) is None  # acknowledged, stored, not yet applied
    clock.advance(60)
    assert await app_client.app[DISPATCH].recover() == 1
    case = await case_of(app_client)
    assert case is not None and case.status == "pending_approval"


def test_the_after_sale_tags_are_200_to_209_and_211_to_218() -> None:
    assert sorted(map(int, TAGS)) == [*range(200, 210), *range(211, 219)]


async def test_a_rejection_goes_back_with_its_reason(
    app_client: Client, fake: FakeDouyin, clock: FakeClock
) -> None:
    fake.add(AS, update_time=T0)
    case = await pushed(app_client, fake, 200, "m-1")
    ctx = app_client.app[CTX]
    async with ctx.db.transaction() as session:
        member = await member_named(session, "王组长")
        assert member is not None
        await decide(
            session, ctx, case.id, member, "reject", Sender("console", "王组长"), reason="已超时效"
        )
    await settle(app_client, clock)
    assert fake.operations == [
        (
            202,
            {
                "aftersale_id": AS,
                "update_time": T0,
                "reason": "已超时效",
                "remark": "已超时效",
                "reject_reason_code": int(REJECT_CODE),
            },
        )
    ]
    async with ctx.db.read() as session:
        rows = list(await session.scalars(select(OutboxMessage.status)))
    assert "dead" not in rows


async def test_the_reconciliation_poll_catches_a_missed_push_once(
    app_client: Client, fake: FakeDouyin, clock: FakeClock
) -> None:
    fake.add(AS, update_time=clock.timestamp() - 60)  # its push never arrived
    polls = app_client.app[POLLS]
    assert await polls.run_once() == 1
    await app_client.app[DISPATCH].idle()
    case = await case_of(app_client)
    assert case is not None and case.status == "pending_approval"
    db = app_client.app[CTX].db
    assert await channel_state.get(db, f"cursor:douyin:{SHOP_ID}") == {"until": clock.timestamp()}
    # Another replica does not poll the shop while this one holds its lease.
    other = PollRunner(db, polls.pollers, app_client.app[DISPATCH].accept, clock, holder="b")
    assert await other.run_once() == 0
    # The next window overlaps the last: the same version is one key, handled once.
    before = await table_counts(db)
    clock.advance(601)
    assert await polls.run_once() == 1
    await app_client.app[DISPATCH].idle()
    assert await table_counts(db) == before


async def test_a_refreshed_token_is_kept_for_the_next_start(
    app_client: Client, fake: FakeDouyin, clock: FakeClock
) -> None:
    fake.add(AS, update_time=T0)
    fake.access_token = "rotated-by-the-platform"
    await pushed(app_client, fake, 200, "m-1")
    db = app_client.app[CTX].db
    stored = await channel_state.get(db, f"token:douyin:{SHOP_ID}")
    assert stored is not None and stored["access_token"] == fake.access_token
    shop = douyin_shops(app_client.app[CTX].settings.channels)[0]
    async with aiohttp.ClientSession() as http:
        fresh = DouyinApi(shop, fake.url, lambda: http, clock, db=db)
        calls = len(fake.calls)
        await fresh.detail(AS)
    assert fake.calls[calls:] == ["afterSale/Detail"]  # no second refresh


async def test_calls_in_flight_together_refresh_an_expired_token_once(
    db: Database, fake: FakeDouyin, clock: FakeClock, tmp_path: Path
) -> None:
    """The outbox sends one shop's rows of different cases at once: each finds the token
    expired, but only one spends the refresh token (the platform rotates it), and the
    others go on with the new access token instead of being refused and alerting."""
    fake.add(AS, update_time=T0)
    fake.access_token = "rotated-by-the-platform"
    shop = douyin_shops(douyin_settings(tmp_path, db.url, fake.url).channels)[0]
    async with aiohttp.ClientSession() as http:
        api = DouyinApi(shop, fake.url, lambda: http, clock, db=db)
        found = await asyncio.gather(*(api.detail(AS) for _ in range(4)))
    assert len(found) == 4 and all(found)
    assert fake.calls.count("token/refresh") == 1


async def test_a_refused_refresh_alerts_the_admins_and_keeps_the_notice(
    app_client: Client, fake: FakeDouyin
) -> None:
    fake.add(AS, update_time=T0)
    fake.access_token = "rotated-by-the-platform"
    fake.refresh_token = "not-ours"
    status, _ = await fake.push(app_client, [fake.message(200, AS, "m-1")])
    assert status == 200
    await app_client.app[DISPATCH].idle()
    assert await case_of(app_client) is None
    async with app_client.app[CTX].db.read() as session:
        texts = [m.payload.get("text", "") for m in await session.scalars(select(OutboxMessage))]
        waiting = list(await session.scalars(select(InboundEvent.key)))
    assert any("重新授权" in t for t in texts)
    assert waiting == [f"douyin:{SHOP_ID}:m-1"]


async def test_a_rate_limit_is_retried_and_a_refusal_dead_letters(
    app_client: Client, fake: FakeDouyin, clock: FakeClock
) -> None:
    fake.add(AS, update_time=T0)
    case = await pushed(app_client, fake, 200, "m-1")
    await approve(app_client, case.id, "王组长")
    fake.fail_next("afterSale/operate", 60000)  # 触发限流: retryable
    await app_client.app[WORKER].drain()
    async with app_client.app[CTX].db.read() as session:
        row = (
            await session.scalars(
                select(OutboxMessage).where(OutboxMessage.kind == "channel.refund")
            )
        ).one()
    assert (row.status, row.attempts) == ("pending", 1) and "60000" in row.last_error
    fake.fail_next("afterSale/operate", 30001)  # 权限不足: permanent
    clock.advance(1000)
    await app_client.app[WORKER].drain()
    async with app_client.app[CTX].db.read() as session:
        row = await session.get(OutboxMessage, row.id, populate_existing=True)
    assert row is not None and row.status == "dead" and "30001" in row.last_error
    assert fake.operations == []


async def test_a_push_declaring_hmac_sha256_is_checked_with_it(
    app_client: Client, fake: FakeDouyin
) -> None:
    fake.add(AS, update_time=T0)
    raw = json.dumps([fake.message(200, AS, "h-1")]).encode()
    mac = hmac.new(APP_SECRET.encode(), APP_KEY.encode() + raw + APP_SECRET.encode(), "sha256")
    headers = {"app-id": APP_KEY, "event-sign": mac.hexdigest(), "sign-method": "hmac-sha256"}
    resp = await app_client.post("/webhooks/douyin", data=raw, headers=headers)
    assert (resp.status, await resp.json()) == (200, SUCCESS)
    headers["event-sign"] = push_sign(raw)  # the MD5 sign no longer passes
    resp = await app_client.post("/webhooks/douyin", data=raw, headers=headers)
    assert resp.status == 401
