"""DingTalk end to end, Stream mode: the app holds a Stream connection to the fake gateway
(tests/fakes/dingtalk_stream.py), served on the same loopback server as the fake DingTalk
API it sends cards and texts to. A 132-yuan case gets an approval card in each CS lead's
robot chat; a click arrives as a CALLBACK frame, is acked with the clicker's updated
card once its key is stored, and every copy is updated; a re-pushed or duplicated frame
has one effect; robot messages arrive over the socket too. Both engines.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, NamedTuple

import pytest
from aiohttp.test_utils import TestServer

from bot.appkeys import CTX
from bot.platforms.dingtalk_stream import STREAM
from bot.platforms.dingtalk_stream_protocol import BOT_MESSAGES, CARD_CALLBACKS
from bot.startup_report import startup_report
from storage.db import Database
from storage.models import AuditEvent, InboxKey
from tests.fakes.dingtalk import APP_KEY, APP_SECRET, FakeDingtalk
from tests.fakes.dingtalk_callbacks import DingtalkSigner, dingtalk_app
from tests.fakes.dingtalk_stream import FakeStreamGateway, repushing
from tests.fakes.wecom_callbacks import settle
from tests.http.test_dingtalk_flow import LEADS, case_status, count, lead_card, open_case
from tests.support import Client, FakeClock, MakeClient


@pytest.fixture
def gateway() -> FakeStreamGateway:
    return FakeStreamGateway(client_id=APP_KEY, client_secret=APP_SECRET, repush_after=0.3)


@pytest.fixture
async def fake(clock: FakeClock, gateway: FakeStreamGateway) -> AsyncIterator[FakeDingtalk]:
    """The fake DingTalk API with the fake Stream gateway on the same api_base."""
    dingtalk = FakeDingtalk(clock=lambda: clock.now.timestamp())
    app = dingtalk.app()
    gateway.install(app)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    dingtalk.url = gateway.url = str(server.make_url("")).rstrip("/")
    try:
        async with repushing(gateway):
            yield dingtalk
    finally:
        await server.close()


@pytest.fixture
async def client(
    db: Database, tmp_path: Path, clock: FakeClock, fake: FakeDingtalk, aiohttp_client: MakeClient
) -> Client:
    app = dingtalk_app(db, tmp_path, clock, fake.url, mode="stream")
    client = await aiohttp_client(app)
    await asyncio.wait_for(client.app[STREAM].connected.wait(), 10)
    return client


@pytest.fixture
def signer(clock: FakeClock, fake: FakeDingtalk) -> DingtalkSigner:
    return DingtalkSigner(clock, fake)


class Env(NamedTuple):
    client: Client
    clock: FakeClock
    fake: FakeDingtalk
    gateway: FakeStreamGateway
    signer: DingtalkSigner


@pytest.fixture
def env(
    client: Client,
    clock: FakeClock,
    fake: FakeDingtalk,
    gateway: FakeStreamGateway,
    signer: DingtalkSigner,
) -> Env:
    return Env(client, clock, fake, gateway, signer)


async def push(client: Client, gateway: FakeStreamGateway, topic: str, data: Any) -> str:
    """One frame in, waited until the gateway has its success ack, then settled."""
    mid = await gateway.push(topic, data)
    await gateway.wait(lambda: mid in gateway.done)
    await settle(client.app)
    return mid


async def test_132_yuan_case_is_approved_from_a_card_click_over_stream(env: Env) -> None:
    client, clock, fake, gateway, signer = env
    assert gateway.opened[0] == [
        {"type": "CALLBACK", "topic": BOT_MESSAGES},
        {"type": "CALLBACK", "topic": CARD_CALLBACKS},
    ]
    case_id = await open_case(client, clock)
    for lead in LEADS:
        assert lead_card(fake, lead)["callbackType"] == "STREAM"
    assert all("callbackRouteKey" not in body for body in fake.deliveries)

    clock.advance(120)
    wang = lead_card(fake, "manager1001")["outTrackId"]
    mid = await push(client, gateway, CARD_CALLBACKS, signer.click("manager1001", wang, "approve"))
    ack = gateway.answer(mid)
    assert ack["code"] == 200
    shown = ack["data"]["response"]["cardData"]["cardParamMap"]
    assert shown["closed"] == "true" and "王组长" in shown["summary"]

    assert await case_status(client, case_id) == "refund_pending"
    assert {u["outTrackId"] for u in fake.updates} == {
        lead_card(fake, lead)["outTrackId"] for lead in LEADS
    }
    for lead in LEADS:
        assert "已由 王组长 于" in lead_card(fake, lead)["params"]["status"]
    # Stream mode mounts no HTTP callback for robot messages or card clicks, and says so
    report = [line.text for line in startup_report(client.app[CTX].settings)]
    assert any("dingtalk（Stream 模式）" in text for text in report)
    for path in ("/callbacks/dingtalk", "/callbacks/dingtalk/card"):
        assert (await client.post(path, json={})).status in (404, 405)


async def test_a_re_pushed_or_duplicated_click_has_one_effect(env: Env) -> None:
    client, clock, fake, gateway, signer = env
    case_id = await open_case(client, clock)
    liu = lead_card(fake, "manager1004")["outTrackId"]
    payload = signer.click("manager1004", liu, "approve")
    # cut mid-frame: reconnect with a fresh ticket, the frame comes again
    cut = await gateway.push(CARD_CALLBACKS, payload, drop_mid_frame=True)
    await gateway.wait(lambda: cut in gateway.done)
    await push(client, gateway, CARD_CALLBACKS, payload)  # the platform sends it twice
    await settle(client.app)
    assert await case_status(client, case_id) == "refund_pending"
    assert await count(client, AuditEvent, AuditEvent.action == "approve") == 1
    assert len(fake.updates) == len(LEADS)
    assert gateway.connections >= 2 and gateway.refusals == []


async def test_robot_messages_over_stream_are_answered_once(env: Env) -> None:
    client, clock, fake, gateway, signer = env
    before = await count(client, InboxKey)
    text = signer.text("manager1001", "/帮助")
    first = await push(client, gateway, BOT_MESSAGES, text)
    await push(client, gateway, BOT_MESSAGES, text)  # the same msgId, another frame
    assert gateway.answer(first)["data"] == {"response": {}}
    assert await count(client, InboxKey) == before + 1
    replies = fake.texts_to("manager1001")
    assert len(replies) == 1 and "可用命令" in replies[0]


async def test_a_stranger_or_a_foreign_robot_over_stream_changes_nothing(env: Env) -> None:
    client, clock, fake, gateway, signer = env
    case_id = await open_case(client, clock)
    await push(client, gateway, BOT_MESSAGES, signer.text("stranger9", f"/同意 {case_id}"))
    assert fake.texts_to("stranger9") == ["您还不是售后机器人的成员，请联系管理员添加"]
    foreign = signer.text("manager1001", f"/同意 {case_id}", robot_code="other")
    mid = await push(client, gateway, BOT_MESSAGES, foreign)
    assert gateway.answer(mid)["code"] == 403 and gateway.deliveries[mid] == 1
    assert await case_status(client, case_id) == "pending_approval"
    garbled = await push(client, gateway, CARD_CALLBACKS, {"outTrackId": "x"})
    assert gateway.answer(garbled)["code"] == 400
    assert gateway.bad_acks == []


async def test_an_approve_command_over_stream_closes_every_card(env: Env) -> None:
    client, clock, fake, gateway, signer = env
    case_id = await open_case(client, clock)
    await push(client, gateway, BOT_MESSAGES, signer.text("manager1004", f"/同意 {case_id}"))
    assert await case_status(client, case_id) == "refund_pending"
    assert len(fake.updates) == len(LEADS)
    for lead in LEADS:
        assert "已由 刘组长 于" in lead_card(fake, lead)["params"]["status"]
