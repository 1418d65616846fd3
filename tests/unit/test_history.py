"""The customer history a director sees on a large return."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from handlers.risk import history_lines
from storage.db import Database
from storage.history import customer_history, histories
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
    assert "售后率 100%" in lines  # 1 return in the window of 1 order, not 3 of 1
    assert lines[0] == "近180天订单 1 笔，累计消费 ¥200.00"
    assert "首单时间 2024-06-04" in lines  # the first order ever, not the first in the window


async def test_histories_of_many_buyers_match_each_buyers_own(db: Database) -> None:
    async with db.transaction() as session:
        customer = Customer(channel="generic", buyer_ref="buyer-1", nick="喵星人", flagged=True)
        session.add(customer)
        await session.flush()
        session.add(
            CustomerOrder(
                customer_id=customer.id, order_id="SO-1", amount_fen=20000, ordered_at=NOW
            )
        )
        other = a_case(5, NOW - timedelta(days=3))
        other.buyer_ref = "buyer-2"
        session.add_all([a_case(1, NOW - timedelta(days=30)), a_case(2, NOW), other])
    buyers = [("generic", "buyer-1"), ("generic", "buyer-2"), ("generic", "buyer-3")]
    async with db.read() as session:
        together = await histories(session, buyers, NOW, exclude=["RC-261121-0002"])
        alone = {
            b: await customer_history(session, b[0], b[1], NOW, "RC-261121-0002") for b in buyers
        }
    assert together == alone
    assert (together[buyers[0]].returns, together[buyers[0]].orders) == (1, 1)
    assert together[buyers[0]].flagged and together[buyers[1]].returns == 1
    assert together[buyers[2]].returns == 0


async def test_anomalies_by_kind_and_disputes_in_the_window(db: Database) -> None:
    from storage.models import DisputeEvent, Inspection

    async with db.transaction() as session:
        session.add_all(
            [a_case(n, NOW - timedelta(days=d)) for n, d in ((1, 10), (2, 20), (3, 400))]
        )
        await session.flush()
        for n, outcome, days in (
            (1, "missing_parts", 9),
            (2, "missing_parts", 19),
            (2, "damaged", 19),
            (3, "empty", 399),
            (1, "ok", 9),
        ):
            session.add(
                Inspection(
                    case_id=f"RC-261121-{n:04d}",
                    channel="generic",
                    buyer_ref="buyer-1",
                    outcome=outcome,
                    detail="滤网",
                    inspector="小周",
                    at=NOW - timedelta(days=days),
                )
            )
        session.add(
            DisputeEvent(
                case_id="RC-261121-0001",
                kind="outcome",
                outcome="agreed",
                actor="小美",
                at=NOW - timedelta(days=8),
            )
        )
        session.add(
            DisputeEvent(
                case_id="RC-261121-0001",
                kind="script",
                scenario="缺配件",
                actor="小美",
                at=NOW - timedelta(days=8),
            )
        )
    async with db.read() as session:
        found = await customer_history(session, "generic", "buyer-1", NOW, "RC-261121-0009")
    assert found.anomalies == (("missing_parts", 2), ("damaged", 1))  # the empty box is old
    assert found.disputes == 1  # outcomes only, not the script pulled
    lines = history_lines(found)
    assert "近180天验货异常：缺配件 2 次、破损 1 次" in lines and "近180天纠纷 1 次" in lines
    assert not any("验货异常" in line for line in history_lines(found, anomalies=False))
