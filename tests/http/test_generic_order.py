"""The amount against the items (issue 6 D), over HTTP on both engines."""

from __future__ import annotations

from tests.http.generic_cases import load, request, submit
from tests.support import Client, FakeClock, post_generic


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
