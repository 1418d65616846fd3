"""POST /webhooks/generic/orders on both engines: an OMS keeps purchase history current.

Signed like the return webhook; a paid order counts on the director's card, a repeat
changes nothing, a cancelled order leaves the history, and a refused request (bad
signature, bad body) stores nothing.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from bot.appkeys import CTX
from storage.models import CustomerOrder
from tests.http.generic_cases import cards, request, submit
from tests.support import Client, FakeClock, post_generic, table_counts

ROUTE = "/webhooks/generic/orders"


def order(n: int, amount: str = "199.00", **overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "event_id": f"oms-ord-{n}",
        "shop": "main-store",
        "order_id": f"SO-{n}",
        "buyer": {"ref": "buyer-8812", "nick": "喵星人"},
        "status": "paid",
        "amount": amount,
        "occurred_at": "2026-11-01T10:00:00+08:00",
    }
    body.update(overrides)
    return body


async def stored(client: Client) -> list[tuple[str, int]]:
    async with client.app[CTX].db.read() as session:
        rows = await session.execute(
            select(CustomerOrder.order_id, CustomerOrder.amount_fen).order_by(
                CustomerOrder.order_id
            )
        )
        return [(o, a) for o, a in rows]


async def test_paid_orders_fill_the_directors_history(client: Client, clock: FakeClock) -> None:
    for n, amount in enumerate(("199.00", "350.00", "88.00")):
        status, answer = await post_generic(client, order(n, amount), clock, path=ROUTE)
        assert (status, answer) == (202, {"order_id": f"SO-{n}", "duplicate": False})

    case_id = await submit(client, clock, request(2, "2880.00"))
    [card] = await cards(client, case_id)
    assert card.card["history"][0] == "近180天订单 3 笔，累计消费 ¥637.00"


async def test_a_repeat_is_a_duplicate_and_a_correction_replaces(
    client: Client, clock: FakeClock
) -> None:
    assert (await post_generic(client, order(1), clock, path=ROUTE))[0] == 202
    status, answer = await post_generic(client, order(1), clock, path=ROUTE)
    assert (status, answer) == (202, {"order_id": "SO-1", "duplicate": True})
    fixed = order(1, "209.00", event_id="oms-ord-1-fix")
    assert (await post_generic(client, fixed, clock, path=ROUTE))[0] == 202
    assert await stored(client) == [("SO-1", 20900)]


async def test_a_cancelled_order_leaves_the_history(client: Client, clock: FakeClock) -> None:
    await post_generic(client, order(1), clock, path=ROUTE)
    await post_generic(client, order(2), clock, path=ROUTE)
    cancel = order(1, event_id="oms-ord-1-cancel", status="cancelled")
    del cancel["amount"]
    assert await post_generic(client, cancel, clock, path=ROUTE) == (
        202,
        {"order_id": "SO-1", "duplicate": False},
    )
    assert await stored(client) == [("SO-2", 19900)]


async def test_refused_requests_store_nothing(client: Client, clock: FakeClock) -> None:
    db = client.app[CTX].db
    before = await table_counts(db)
    cases = [
        (order(1), "wrong-secret", 401),
        (order(1, amount=199), None, 422),  # a JSON number is not an amount
        (order(1, status="shipped"), None, 422),
        (order(1, extra=1), None, 422),
        ({**order(1), "buyer": {"nick": "x"}}, None, 422),  # no buyer.ref
        (b"[1, 2]", None, 400),
    ]
    for body, secret, expected in cases:
        kwargs = {"secret": secret} if secret else {}
        status, answer = await post_generic(client, body, clock, path=ROUTE, **kwargs)
        assert status == expected, (body, answer)
        assert answer["error"]
    assert await table_counts(db) == before
