"""Shopify end to end against the fake, on both engines: a signed `returns/request` ->
case at its tier -> approval -> `returnApproveRequest` once through a timeout or a
lost answer; the refund once; bad HMACs, duplicates (X-Shopify-Event-Id) and an
older delivery arriving second."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import select

from bot.app import create_app
from bot.appkeys import CTX, WORKER
from handlers import notify
from storage import outbox
from storage.db import Database
from storage.models import Case
from tests.fakes.shopify import (
    DOMAIN,
    SECRET,
    FakeShopify,
    return_payload,
    running_shopify,
    shopify_settings,
    webhook_hmac,
)
from tests.http.generic_cases import approve
from tests.support import Client, FakeClock, MakeClient, table_counts

RETURN = "gid://shopify/Return/1001"
ORDER = "gid://shopify/Order/5001"


@pytest.fixture
async def fake() -> AsyncIterator[FakeShopify]:
    async with running_shopify() as server:
        yield server


@pytest.fixture
async def app_client(
    db: Database, tmp_path: Path, clock: FakeClock, fake: FakeShopify, aiohttp_client: MakeClient
) -> Client:
    settings = shopify_settings(tmp_path, db.url, fake.url)
    return await aiohttp_client(create_app(settings, clock=clock, background=False))


async def case_of(client: Client) -> Case:
    async with client.app[CTX].db.read() as session:
        query = select(Case).where(Case.channel == "shopify", Case.external_id == "1001")
        return (await session.scalars(query)).one()


async def settle(client: Client, clock: FakeClock, rounds: int = 3) -> None:
    for _ in range(rounds):
        await client.app[WORKER].drain()
        clock.advance(1000)


@pytest.mark.parametrize("failure", ["timeout", "drop", 503, "throttled"])
async def test_return_request_to_approval_once(
    app_client: Client, fake: FakeShopify, clock: FakeClock, failure: str | int
) -> None:
    fake.returns[RETURN] = "REQUESTED"
    status, answer = await fake.send(app_client, "returns/request", return_payload(), "ev-1")
    assert status == 200 and answer["duplicate"] is False
    case = await case_of(app_client)
    assert (case.status, case.tier, case.amount_fen, case.kind) == (
        "pending_approval",
        "cs_lead",
        13200,
        "return_refund",
    )
    assert (case.shop, case.order_id) == (DOMAIN, "5001")
    await approve(app_client, case.id, "王组长")
    fake.fail_next("returnApproveRequest", failure)
    await settle(app_client, clock)
    assert fake.mutations == [("returnApproveRequest", {"id": RETURN})]
    assert fake.returns[RETURN] == "OPEN"
    assert (await case_of(app_client)).status == "awaiting_return"


@pytest.mark.parametrize("failure", ["timeout", "drop"])
async def test_the_refund_is_created_once(
    app_client: Client, fake: FakeShopify, clock: FakeClock, failure: str
) -> None:
    fake.returns[RETURN] = "REQUESTED"
    assert (await fake.send(app_client, "returns/request", return_payload(), "ev-1"))[0] == 200
    case = await case_of(app_client)
    case.refund_fen = case.amount_fen
    ctx = app_client.app[CTX]
    async with ctx.db.transaction() as session:  # what the warehouse's "完好" enqueues
        message = notify.refund_message(case)
        outbox.enqueue(
            session,
            kind=message.kind,
            destination=message.destination,
            payload=message.payload,
            now=ctx.now(),
            case_id=case.id,
        )
    fake.fail_next("refundCreate", failure)
    await settle(app_client, clock)
    creates = [payload for name, payload in fake.mutations if name == "refundCreate"]
    assert creates == [
        {
            "orderId": ORDER,
            "note": f"returnhub:{case.id}",
            "transactions": [
                {
                    "orderId": ORDER,
                    "parentId": "gid://shopify/OrderTransaction/42",
                    "kind": "REFUND",
                    "gateway": "shopify_payments",
                    "amount": "132.00",
                }
            ],
        }
    ]


async def test_a_duplicate_event_id_is_dropped(app_client: Client, fake: FakeShopify) -> None:
    assert (await fake.send(app_client, "returns/request", return_payload(), "ev-1"))[0] == 200
    before = await table_counts(app_client.app[CTX].db)
    status, answer = await fake.send(app_client, "returns/request", return_payload(), "ev-1")
    assert status == 200 and answer["duplicate"] is True
    assert await table_counts(app_client.app[CTX].db) == before


async def test_an_older_delivery_second_leaves_the_newer_state(
    app_client: Client, fake: FakeShopify
) -> None:
    newer = return_payload(price="99.00", updated_at="2026-11-23T11:00:00+08:00")
    older = return_payload(price="132.00", updated_at="2026-11-23T10:00:00+08:00")
    assert (await fake.send(app_client, "returns/request", newer, "ev-2"))[0] == 200
    assert (await fake.send(app_client, "returns/request", older, "ev-1"))[0] == 200
    case = await case_of(app_client)
    assert case.amount_fen == 9900
    assert case.channel_version.startswith("2026-11-23T03:00:00")


async def test_a_cancelled_return_closes_the_case(app_client: Client, fake: FakeShopify) -> None:
    assert (await fake.send(app_client, "returns/request", return_payload(), "ev-1"))[0] == 200
    cancelled = {
        "id": 1001,
        "status": "canceled",
        "order": {"id": 5001},
        "updated_at": "2026-11-23T12:00:00+08:00",
    }  # no line items: a cancel need not repeat them
    assert (await fake.send(app_client, "returns/cancel", cancelled, "ev-2"))[0] == 200
    assert (await case_of(app_client)).status == "closed"


@pytest.mark.parametrize("how", ["wrong secret", "unknown shop", "tampered", "no header"])
async def test_bad_signatures_are_refused_and_store_nothing(
    app_client: Client, fake: FakeShopify, how: str
) -> None:
    before = await table_counts(app_client.app[CTX].db)
    raw = json.dumps(return_payload()).encode()
    if how == "wrong secret":
        status, _ = await fake.send(app_client, "returns/request", raw, "e", secret="x" + SECRET)
    elif how == "unknown shop":
        status, _ = await fake.send(app_client, "returns/request", raw, "e", domain="x.com")
    else:
        headers = {
            "X-Shopify-Topic": "returns/request",
            "X-Shopify-Shop-Domain": DOMAIN,
            "X-Shopify-Event-Id": "e",
        }
        if how == "tampered":
            headers["X-Shopify-Hmac-Sha256"] = webhook_hmac(raw)
            raw = raw.replace(b"132.00", b"1.00")
        resp = await app_client.post("/webhooks/shopify", data=raw, headers=headers)
        status = resp.status
    assert status == 401
    assert await table_counts(app_client.app[CTX].db) == before


async def test_a_return_without_prices_is_refused_with_the_field(
    app_client: Client, fake: FakeShopify
) -> None:
    body = return_payload()
    del body["return_line_items"][0]["fulfillment_line_item"]["line_item"]["price"]
    status, answer = await fake.send(app_client, "returns/request", body, "ev-1")
    assert status == 422 and "price" in answer["error"]


async def test_other_topics_are_acknowledged_and_ignored(
    app_client: Client, fake: FakeShopify
) -> None:
    before = await table_counts(app_client.app[CTX].db)
    status, answer = await fake.send(app_client, "orders/create", {"id": 1}, "ev-9")
    assert status == 200 and answer["ignored"] == "orders/create"
    assert await table_counts(app_client.app[CTX].db) == before
