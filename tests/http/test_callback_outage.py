"""A minute-long outage of the OMS's callback receiver (issue 6, B): nothing is
dead-lettered, nothing is lost, and every case's `approved` reaches the fake OMS
before its `refund_released` — with the retries as quick as the jitter allows.
"""

from __future__ import annotations

import random
from datetime import timedelta

from sqlalchemy import select

from bot.appkeys import CTX, WORKER
from storage.models import Case, OutboxMessage
from tests.fakes.oms import FakeOms
from tests.support import Client, FakeClock, post_generic, return_body

CASES = 12


class LowRng(random.Random):
    def random(self) -> float:  # every wait at the bottom of its jitter range
        return 0.0


async def test_a_minute_long_outage_loses_nothing_and_keeps_each_cases_order(
    client: Client, clock: FakeClock, oms: FakeOms
) -> None:
    worker = client.app[WORKER]
    worker.outcomes.schedule.rng = LowRng()
    start = clock()
    oms.down(503)
    case_ids = []
    for n in range(CASES):  # small refunds, auto-approved: approved + refund_released each
        body = return_body(
            event_id=f"evt-out-{n}",
            external_id=f"AS-OUT-{n}",
            order_id=f"SO-OUT-{n}",
            buyer={"ref": f"buyer-out-{n}", "nick": "喵"},
        )
        status, answer = await post_generic(client, body, clock)
        assert status == 202, answer
        case_ids.append(answer["case_id"])
        await worker.run_once()
        clock.advance(1)
    while clock() < start + timedelta(seconds=60):  # the outage: the worker keeps ticking
        await worker.drain()
        clock.advance(1)
    assert oms.failed > 2 * CASES  # retried all along, not once

    oms.up()
    for _ in range(360):  # an hour at most: the longest wait is the 10-minute cap
        await worker.drain()
        if len(oms.events) == 2 * CASES:
            break
        clock.advance(10)

    async with client.app[CTX].db.read() as session:
        rows = list(await session.scalars(select(OutboxMessage)))
        cases = [await session.get(Case, c) for c in case_ids]
    assert {r.status for r in rows} == {"sent"}  # no dead letter, no alert, nothing left
    for case_id in case_ids:
        assert oms.names(case_id) == ["approved", "refund_released"]
    assert len(oms.events) == 2 * CASES and oms.refused == []
    assert [c.status if c else None for c in cases] == ["refunded"] * CASES
