"""Case events POSTed back to the OMS (generic channel callbacks) when the receiver
fails: 5xx and dropped connections are retried with backoff and nothing is lost;
a lost acknowledgement means a redelivery under the same event id; a 4xx dead-letters.
"""

from __future__ import annotations

from sqlalchemy import select

from bot.appkeys import CTX, WORKER
from storage import outbox_dead
from storage.models import AuditEvent, Case, OutboxMessage
from tests.fakes.oms import CLOSE, LOSE_ACK, FakeOms
from tests.support import Client, FakeClock, post_generic, return_body


async def submit(client: Client, clock: FakeClock) -> str:
    status, answer = await post_generic(client, return_body(), clock)
    assert status == 202, answer
    case_id: str = answer["case_id"]
    return case_id


async def status_of(client: Client, case_id: str) -> str:
    async with client.app[CTX].db.read() as session:
        case = await session.get(Case, case_id)
    assert case is not None
    return case.status


async def channel_rows(client: Client) -> list[OutboxMessage]:
    async with client.app[CTX].db.read() as session:
        query = select(OutboxMessage).where(OutboxMessage.destination == "channel:generic")
        return list(await session.scalars(query.order_by(OutboxMessage.id)))


async def test_callbacks_survive_the_receiver_going_down(
    client: Client, clock: FakeClock, oms: FakeOms
) -> None:
    worker = client.app[WORKER]
    oms.down(503)
    case_id = await submit(client, clock)
    await worker.drain()
    rows = await channel_rows(client)
    # One case's events leave in order: refund_released waits behind approved.
    assert [(r.payload["event"], r.status, r.attempts) for r in rows] == [
        ("approved", "pending", 1),
        ("refund_released", "pending", 0),
    ]
    assert "503" in rows[0].last_error
    assert rows[0].next_at >= clock().replace(tzinfo=None)
    await worker.drain()  # backing off: nothing is due yet
    assert oms.failed == 1

    oms.down(CLOSE)  # now the connection drops without an answer
    clock.advance(1000)  # past the longest backoff (900 s)
    await worker.drain()
    assert oms.failed == 2
    assert [r.attempts for r in await channel_rows(client)] == [2, 0]

    oms.down(LOSE_ACK)  # it takes the event but the answer never arrives
    clock.advance(1000)
    await worker.drain()
    assert len(oms.deliveries) == 1 and await status_of(client, case_id) == "refund_pending"

    oms.up()
    clock.advance(1000)
    await worker.drain()
    rows = await channel_rows(client)
    assert [(r.status, r.attempts) for r in rows] == [("sent", 4), ("sent", 1)]
    assert oms.names(case_id) == ["approved", "refund_released"]
    assert [d.body["event_id"] for d in oms.deliveries] == [
        f"rh-{rows[0].id}",
        f"rh-{rows[0].id}",
        f"rh-{rows[1].id}",
    ]  # the lost answer made approved arrive twice, under one event id
    assert oms.refused == []
    assert await status_of(client, case_id) == "refunded"


async def test_a_callback_refused_with_4xx_dead_letters_at_once(
    client: Client, clock: FakeClock, oms: FakeOms
) -> None:
    oms.down(400)
    case_id = await submit(client, clock)
    await client.app[WORKER].drain()
    rows = await channel_rows(client)
    # The refund waits behind the dead approved event until an admin decides.
    assert [(r.status, r.attempts) for r in rows] == [("dead", 1), ("pending", 0)]
    assert "400" in rows[0].last_error
    async with client.app[CTX].db.transaction() as session:
        assert await outbox_dead.discard(session, [rows[0].id]) == 1
    await client.app[WORKER].drain()
    rows = await channel_rows(client)
    assert [(r.status, r.attempts) for r in rows] == [("void", 1), ("dead", 1)]
    # A refund the channel refused is never marked refunded; finance is told instead.
    assert await status_of(client, case_id) == "refund_pending"
    async with client.app[CTX].db.read() as session:
        actions = list(
            await session.scalars(
                select(AuditEvent.action)
                .where(AuditEvent.case_id == case_id)
                .order_by(AuditEvent.id)
            )
        )
    assert "refund_failed" in actions
