"""A warehouse member scanning a pallet (issue 6, item 2): WeCom drops app messages past
30 a minute and 1,000 an hour per member without a word, so the outbox must pace them.
Forty scans' cards and texts all reach the fake WeCom, none is dropped, on both engines.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from sqlalchemy import select

from bot.appkeys import CTX
from storage.models import OutboxMessage
from tests.fakes.wecom import FakeWecom, running
from tests.fakes.wecom_callbacks import CallbackSigner, settle
from tests.support import Client, FakeClock, post_generic, return_body

SCANS = 40
WAREHOUSE = "xiaozhou"


@pytest.fixture
async def fake(clock: FakeClock) -> AsyncIterator[FakeWecom]:
    async with running(FakeWecom(clock=lambda: clock.now.timestamp())) as server:
        yield server


@pytest.fixture
def client(wecom_client: Client) -> Client:
    return wecom_client


async def test_a_burst_of_forty_scans_loses_nothing_at_wecom(
    client: Client, clock: FakeClock, fake: FakeWecom
) -> None:
    signer = CallbackSigner(clock.timestamp)
    item = {"sku": "BOWL-1", "name": "陶瓷食盆", "qty": 1, "unit_price": "39.00"}
    for n in range(SCANS):  # parcels on their way back, each for its own case
        body = return_body(
            event_id=f"pallet-{n}",
            external_id=f"AS-PALLET-{n}",
            order_id=f"SO-PALLET-{n}",
            buyer={"ref": f"buyer-pallet-{n}", "nick": "喵"},
            amount="39.00",
            items=[item],
            kind="return_refund",
            return_waybill=f"SF9000{n:02d}",
            carrier="SF",
        )
        status, answer = await post_generic(client, body, clock)
        assert status == 202, answer
    await settle(client.app)
    before = len(fake.messages)

    for n in range(SCANS):  # the scanner types forty waybills within seconds
        sealed = signer.seal(signer.text(WAREHOUSE, f"SF9000{n:02d}", msg_id=91_000 + n))
        resp = await client.post("/callbacks/wecom", params=sealed[0], data=sealed[1])
        assert resp.status == 200
    await settle(client.app)
    assert len(fake.messages) - before <= 30  # paced: the first minute's budget at most

    for _ in range(30):  # the rest go out as the windows reopen
        clock.advance(60)
        await settle(client.app)
    async with client.app[CTX].db.read() as session:
        rows = list(await session.scalars(select(OutboxMessage)))
    assert {r.status for r in rows} == {"sent"}
    assert fake.dropped_for(WAREHOUSE) == [] and fake.dropped == []
    cards = fake.cards_to(WAREHOUSE)
    assert len(cards) >= SCANS  # every scan's inspection card arrived
    for n in range(SCANS):
        assert any(f"SF9000{n:02d}" in str(card) for card in cards)
    to_member = [r for r in rows if r.destination == f"wecom:{WAREHOUSE}"]
    assert sum(r.sends for r in to_member) == len(
        [m for m in fake.messages if m["touser"] == WAREHOUSE]
    )
