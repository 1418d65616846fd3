"""The handlers Stream mode calls (`stream_handlers`): the same JSON as the HTTP
endpoints, the event's key stored before the answer, refusals raised, and cards sent
with Stream callbacks. The WebSocket itself is bot/platforms/dingtalk_stream.py's."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bot.appkeys import CTX
from bot.platforms.dingtalk import CARD_TOPIC, ROBOT_TOPIC, stream_handlers
from bot.platforms.inbound import CallbackRejected
from storage.db import Database
from storage.models import Case, InboxKey
from tests.fakes.dingtalk import FakeDingtalk, running
from tests.fakes.dingtalk_callbacks import DingtalkSigner, dingtalk_app
from tests.fakes.wecom_callbacks import settle
from tests.support import Client, FakeClock, MakeClient, post_generic, return_body


@pytest.fixture
async def fake(clock: FakeClock) -> AsyncIterator[FakeDingtalk]:
    async with running(FakeDingtalk(clock=lambda: clock.now.timestamp())) as server:
        yield server


@pytest.fixture
async def client(
    db: Database, tmp_path: Path, clock: FakeClock, fake: FakeDingtalk, aiohttp_client: MakeClient
) -> Client:
    return await aiohttp_client(dingtalk_app(db, tmp_path, clock, fake.url, mode="stream"))


async def test_a_click_over_stream_decides_and_answers_with_the_card(
    client: Client, clock: FakeClock, fake: FakeDingtalk
) -> None:
    item = {"sku": "FEEDER-2", "name": "自动喂食器", "qty": 1, "unit_price": "132.00"}
    status, answer = await post_generic(client, return_body(amount="132.00", items=[item]), clock)
    assert status == 202
    await settle(client.app)
    (card,) = fake.cards_to("manager1001")
    assert card["callbackType"] == "STREAM"
    assert "callbackRouteKey" not in fake.deliveries[0]
    # HTTP mode's robot and card routes are not mounted in Stream mode.
    assert (await client.post("/callbacks/dingtalk", json={})).status == 404
    assert (await client.post("/callbacks/dingtalk/card", json={})).status == 404

    handlers = stream_handlers(client.app)
    click = DingtalkSigner(clock, fake).click("manager1001", card["outTrackId"], "approve")
    shown = await handlers[CARD_TOPIC](click)
    assert shown["cardData"]["cardParamMap"]["closed"] == "true"
    await settle(client.app)
    async with client.app[CTX].db.read() as session:
        case = await session.get(Case, answer["case_id"])
        assert case is not None and case.status == "refund_pending"
    assert len(fake.updates) == 2


async def test_a_robot_message_over_stream_is_stored_once_and_refusals_raise(
    client: Client, clock: FakeClock, fake: FakeDingtalk
) -> None:
    handlers = stream_handlers(client.app)
    text = DingtalkSigner(clock, fake).text("manager1001", "/帮助")
    assert await handlers[ROBOT_TOPIC](text) == {}
    assert await handlers[ROBOT_TOPIC](text) == {}  # a re-pushed frame: no second effect
    await settle(client.app)
    async with client.app[CTX].db.read() as session:
        assert await session.get(InboxKey, f"dingtalk:msg:{text['msgId']}") is not None
    assert len(fake.texts_to("manager1001")) == 1
    with pytest.raises(CallbackRejected) as refused:
        await handlers[ROBOT_TOPIC]({**text, "robotCode": "other", "msgId": "m2"})
    assert refused.value.status == 403
    with pytest.raises(CallbackRejected):
        await handlers[CARD_TOPIC]({"outTrackId": "x", "userId": "u", "content": "{"})
