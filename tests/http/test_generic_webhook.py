"""POST /webhooks/generic end to end: signed intake, routing by amount, versions,
cancellation, refusals that store nothing, and callbacks to a fake OMS that goes
down and comes back. Every test runs on SQLite and (with RETURNHUB_TEST_PG) PostgreSQL.
"""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select

from bot.appkeys import CTX, WORKER
from storage.db import Database
from storage.models import AuditEvent, Case, Customer, CustomerOrder, OutboxMessage
from tests.fakes.oms import FakeOms
from tests.http.generic_cases import approve, cards, load, request, submit
from tests.support import (
    Client,
    FakeClock,
    post_generic,
    return_body,
)


async def test_small_refund_is_auto_approved_and_refunded_via_the_oms(
    client: Client, clock: FakeClock, oms: FakeOms
) -> None:
    status, answer = await post_generic(client, return_body(), clock)
    assert status == 202
    assert answer["duplicate"] is False and answer["case_id"].startswith("RC-261123-")
    case_id = answer["case_id"]
    case = await load(client, case_id)
    assert (case.status, case.tier, case.amount_fen, case.steps) == (
        "refund_pending",
        "auto",
        2990,
        [],
    )

    await client.app[WORKER].drain()

    assert oms.refused == []  # our signature and timestamp pass the receiver's checks
    assert oms.names(case_id) == ["approved", "refund_released"]
    refund = oms.of_case(case_id)[1]
    assert refund["refund_id"] == case_id and refund["amount"] == "29.90"
    assert refund["external_id"] == "AS20261121001" and refund["shop"] == "main-store"
    assert refund["event_id"].startswith("rh-") and refund["occurred_at"].endswith("+00:00")
    assert list(refund)[:7] == [
        "event_id",
        "event",
        "case_id",
        "external_id",
        "shop",
        "status",
        "occurred_at",
    ]
    assert (await load(client, case_id)).status == "refunded"


async def test_mid_amount_waits_for_either_cs_lead(client: Client, clock: FakeClock) -> None:
    case_id = await submit(client, clock, request(1, "132.00"))
    case = await load(client, case_id)
    assert (case.status, case.tier) == ("pending_approval", "cs_lead")
    assert [(s.role, s.state) for s in case.steps] == [("cs_lead", "pending")]
    sent = await cards(client, case_id)
    assert {(c.recipient, c.kind, c.state) for c in sent} == {
        ("王组长", "approval", "open"),
        ("刘组长", "approval", "open"),
    }


async def test_director_card_carries_the_customer_history(
    client: Client, clock: FakeClock, db: Database
) -> None:
    async with db.transaction() as session:
        customer = Customer(channel="generic", buyer_ref="buyer-8812", nick="喵星人")
        session.add(customer)
        await session.flush()
        for n, fen in enumerate((19900, 35000, 8800)):
            ordered = clock().replace(tzinfo=None) - timedelta(days=30 * (n + 1))
            session.add(
                CustomerOrder(
                    customer_id=customer.id, order_id=f"SO-{n}", amount_fen=fen, ordered_at=ordered
                )
            )

    case_id = await submit(client, clock, request(2, "2880.00"))
    case = await load(client, case_id)
    assert (case.status, case.tier) == ("pending_approval", "director")
    assert [(s.role, s.state) for s in case.steps] == [("ops_director", "pending")]
    [card] = await cards(client, case_id)
    assert card.recipient == "李总监"
    history = card.card["history"]
    assert history[0] == "近180天订单 3 笔，累计消费 ¥637.00"
    assert any("历史售后" in line for line in history)
    async with client.app[CTX].db.read() as session:
        sent = (
            await session.scalars(
                select(OutboxMessage).where(
                    OutboxMessage.case_id == case_id, OutboxMessage.kind == "card.send"
                )
            )
        ).one()
    assert sent.payload["card"]["history"] == history


async def test_large_amount_needs_director_then_finance(
    client: Client, clock: FakeClock, oms: FakeOms
) -> None:
    case_id = await submit(client, clock, request(3, "6000.00"))
    case = await load(client, case_id)
    assert case.tier == "director_finance"
    assert [(s.role, s.state) for s in case.steps] == [
        ("ops_director", "pending"),
        ("finance_director", "waiting"),
    ]
    assert [c.recipient for c in await cards(client, case_id)] == ["李总监"]

    await approve(client, case_id, "李总监")
    case = await load(client, case_id)
    assert case.status == "pending_approval"
    assert [s.state for s in case.steps] == ["approved", "pending"]
    assert [c.recipient for c in await cards(client, case_id) if c.state == "open"] == ["赵财务"]

    await approve(client, case_id, "赵财务")
    await client.app[WORKER].drain()
    assert oms.names(case_id) == ["approved", "refund_released"]
    assert oms.of_case(case_id)[1]["amount"] == "6000.00"
    assert (await load(client, case_id)).status == "refunded"


async def test_the_same_event_twice_makes_one_case(client: Client, clock: FakeClock) -> None:
    first = await submit(client, clock, request(4, "132.00"))
    status, again = await post_generic(client, request(4, "132.00"), clock)
    assert (status, again) == (202, {"case_id": first, "duplicate": True})
    async with client.app[CTX].db.read() as session:
        assert len(list(await session.scalars(select(Case)))) == 1
    assert len(await cards(client, first)) == 2


async def test_only_newer_versions_apply(client: Client, clock: FakeClock) -> None:
    case_id = await submit(client, clock, request(5, "29.90", kind="return_refund"))
    assert (await load(client, case_id)).status == "awaiting_return"

    same_version = request(5, "29.90", kind="return_refund", event_id="oms-evt-0005-b")
    status, answer = await post_generic(client, same_version, clock)
    assert (status, answer) == (202, {"case_id": case_id, "duplicate": True})

    shipped = request(
        5,
        "29.90",
        kind="return_refund",
        event_id="oms-evt-0005-c",
        status="buyer_shipped",
        return_waybill="SF1234567890123",
        carrier="顺丰",
        version="2",
    )
    status, answer = await post_generic(client, shipped, clock)
    assert (status, answer) == (202, {"case_id": case_id, "duplicate": False})
    case = await load(client, case_id)
    assert (case.status, case.return_waybill, case.carrier) == (
        "in_transit",
        "SF1234567890123",
        "顺丰",
    )
    assert case.channel_version == "2"

    stale = request(
        5, "29.90", kind="return_refund", event_id="oms-evt-0005-d", status="cancelled", version=1
    )
    status, answer = await post_generic(client, stale, clock)
    assert (status, answer) == (202, {"case_id": case_id, "duplicate": True})
    assert (await load(client, case_id)).status == "in_transit"


async def test_cancelled_closes_the_case_and_its_cards(
    client: Client, clock: FakeClock, oms: FakeOms
) -> None:
    case_id = await submit(client, clock, request(6, "132.00"))
    await client.app[WORKER].drain()
    cancel = request(6, "132.00", event_id="oms-evt-0006-x", status="cancelled", version="2")
    status, answer = await post_generic(client, cancel, clock)
    assert (status, answer) == (202, {"case_id": case_id, "duplicate": False})
    case = await load(client, case_id)
    assert case.status == "closed" and case.closed_at is not None
    assert {c.state for c in await cards(client, case_id)} == {"closed"}
    await client.app[WORKER].drain()
    assert oms.names(case_id) == ["closed"]
    async with client.app[CTX].db.read() as session:
        actions = list(
            await session.scalars(
                select(AuditEvent.action)
                .where(AuditEvent.case_id == case_id)
                .order_by(AuditEvent.id)
            )
        )
    assert actions == ["created", "route", "close"]


async def test_a_minimal_body_takes_the_defaults(client: Client, clock: FakeClock) -> None:
    """Only the required fields: shop from settings, CNY, version from the event time."""
    optional = ("shop", "currency", "reason_code", "reason_text", "buyer", "return_waybill")
    body = request(7, "132.00", drop=[*optional, "evidence", "occurred_at", "version"])
    case_id = await submit(client, clock, body)
    case = await load(client, case_id)
    assert (case.shop, case.currency, case.buyer_ref, case.status) == (
        "main-store",
        "CNY",
        "",
        "pending_approval",
    )
    assert case.channel_version == "2026-11-23T02:00:00.000000Z"


async def test_event_ids_that_collide_when_joined_make_two_cases(
    client: Client, clock: FakeClock
) -> None:
    """Issue 6 A: shop "main" + event "k1:1" and shop "main:k1" + event "1" are two events."""
    first = await submit(client, clock, request(8, "132.00", shop="main", event_id="k1:1"))
    second = await submit(client, clock, request(9, "132.00", shop="main:k1", event_id="1"))
    assert first != second
    async with client.app[CTX].db.read() as session:
        shops = set(await session.scalars(select(Case.shop)))
    assert shops == {"main", "main:k1"}
