"""The customer history a director sees on a large return."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from handlers.risk import history_lines
from storage.db import Database
from storage.history import customer_history
from storage.models import Case, Customer, CustomerOrder

NOW = datetime(2026, 11, 21, 2, 0, tzinfo=UTC).replace(tzinfo=None)


def a_case(n: int, created: datetime) -> Case:
    return Case(
        id=f"RC-261121-{n:04d}",
        channel="generic",
        shop="s",
        external_id=f"AS{n}",
        order_id=f"SO{n}",
        kind="refund_only",
        amount_fen=10000,
        buyer_ref="buyer-1",
        status="refunded",
        created_at=created,
        updated_at=created,
        attachments=[],
    )


async def test_the_return_rate_compares_the_same_year(db: Database) -> None:
    async with db.transaction() as session:
        customer = Customer(channel="generic", buyer_ref="buyer-1", nick="喵星人")
        session.add(customer)
        await session.flush()
        session.add_all(
            [
                CustomerOrder(
                    customer_id=customer.id,
                    order_id=f"SO-{days}",
                    amount_fen=20000,
                    ordered_at=NOW - timedelta(days=days),
                )
                for days in (30, 900)
            ]
        )
        session.add_all(
            [
                a_case(1, NOW - timedelta(days=800)),
                a_case(2, NOW - timedelta(days=700)),
                a_case(3, NOW - timedelta(days=10)),
                a_case(4, NOW),  # the case being approved
            ]
        )
    async with db.read() as session:
        found = await customer_history(session, "generic", "buyer-1", NOW, "RC-261121-0004")
    lines = history_lines(found)
    assert "历史售后 3 次" in lines[1]
    assert "售后率 100%" in lines  # 1 return in the year of 1 order, not 3 of 1
    assert lines[0] == "近一年订单 1 笔，累计消费 ¥200.00"
    assert "首单时间 2024-06-04" in lines  # the first order ever, not the first this year
