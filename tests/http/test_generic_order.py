"""Version order (issue 6 E) and the amount against the items (issue 6 D), over HTTP on
both engines: what applies, what is ignored as older, what is refused and stores nothing."""

from __future__ import annotations

from bot.appkeys import CTX
from tests.http.generic_cases import load, request, submit
from tests.support import Client, FakeClock, post_generic, table_counts


async def test_version_10_is_newer_than_9(client: Client, clock: FakeClock) -> None:
    case_id = await submit(client, clock, request(1, "132.00", version="9"))
    cancel = request(1, "132.00", event_id="e1-cancel", status="cancelled", version="10")
    assert await post_generic(client, cancel, clock) == (
        202,
        {"case_id": case_id, "duplicate": False},
    )
    assert (await load(client, case_id)).status == "closed"


async def test_an_event_without_version_on_a_versioned_case_is_refused(
    client: Client, clock: FakeClock
) -> None:
    case_id = await submit(client, clock, request(2, "132.00", version="1"))
    db = client.app[CTX].db
    before = await table_counts(db)
    cancel = request(2, "132.00", event_id="e2-cancel", status="cancelled", drop=["version"])

    status, answer = await post_generic(client, cancel, clock)

    assert status == 409 and answer["case_id"] == case_id
    assert "版本类型不一致" in answer["error"] and "version kinds differ" in answer["error"]
    assert await table_counts(db) == before
    assert (await load(client, case_id)).status == "pending_approval"


async def test_without_version_a_year_before_1000_is_older(
    client: Client, clock: FakeClock
) -> None:
    """A cancel dated 0999 closed a 2026 case: its time sorted after 2026 as text."""
    body = request(3, "132.00", occurred_at="2026-11-23T10:00:00+08:00", drop=["version"])
    case_id = await submit(client, clock, body)
    assert (await load(client, case_id)).channel_version == "2026-11-23T02:00:00.000000Z"
    cancel = request(
        3,
        "132.00",
        event_id="e3-cancel",
        status="cancelled",
        occurred_at="0999-11-23T10:00:00+08:00",
        drop=["version"],
    )
    assert await post_generic(client, cancel, clock) == (
        202,
        {"case_id": case_id, "duplicate": True},
    )
    assert (await load(client, case_id)).status == "pending_approval"

    later = {**cancel, "event_id": "e3-cancel-2", "occurred_at": "2026-11-23T10:00:01+08:00"}
    status, _ = await post_generic(client, later, clock)
    assert status == 202 and (await load(client, case_id)).status == "closed"


async def test_a_smaller_amount_is_a_partial_refund(client: Client, clock: FakeClock) -> None:
    items = [
        {"sku": "A", "name": "猫砂", "qty": 3, "unit_price": "40.00"},
        {"sku": "B", "name": "猫抓板", "qty": 1, "unit_price": "19.90"},
    ]
    exact = request(4, "139.90", items=items)
    case_id = await submit(client, clock, exact)
    assert (await load(client, case_id)).amount_fen == 13990
    partial = request(5, "60.00", items=items)
    assert (await load(client, await submit(client, clock, partial))).amount_fen == 6000

    over = request(6, "139.91", items=items)
    status, answer = await post_generic(client, over, clock)
    assert status == 422
    assert answer["error"] == (
        "amount 139.91 exceeds the items' total 139.90 (sum of items[].qty × items[].unit_price)"
    )


async def test_an_exchange_may_carry_no_money(client: Client, clock: FakeClock) -> None:
    case_id = await submit(client, clock, request(7, "0.00", kind="exchange"))
    case = await load(client, case_id)
    assert (case.kind, case.amount_fen) == ("exchange", 0)
