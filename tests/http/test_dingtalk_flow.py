"""DingTalk end to end, HTTP mode: a 132-yuan case from the generic webhook to an
approval card in each CS lead's robot chat on the fake DingTalk, a signed click from
one lead, the clicker's card answered at once and every copy updated.

Runs on SQLite and (with RETURNHUB_TEST_PG) PostgreSQL. Requests are signed as
DingTalk signs them (tests/fakes/dingtalk_callbacks.py), never with the code
under test.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from sqlalchemy import func, select

from bot.appkeys import CTX
from storage.models import AuditEvent, Case, InboxKey, OutboxMessage
from tests.fakes.dingtalk import TEMPLATE_ID, FakeDingtalk, running
from tests.fakes.dingtalk_callbacks import DingtalkSigner, card_path
from tests.fakes.wecom_callbacks import settle
from tests.support import Client, FakeClock, post_generic, return_body

LEADS = ("manager1001", "manager1004")  # 王组长, 刘组长


@pytest.fixture
async def fake(clock: FakeClock) -> AsyncIterator[FakeDingtalk]:
    async with running(FakeDingtalk(clock=lambda: clock.now.timestamp())) as server:
        yield server


@pytest.fixture
def client(dingtalk_client: Client) -> Client:
    return dingtalk_client


@pytest.fixture
def signer(clock: FakeClock, fake: FakeDingtalk) -> DingtalkSigner:
    return DingtalkSigner(clock, fake)


async def open_case(client: Client, clock: FakeClock, amount: str = "132.00") -> str:
    item = {"sku": "FEEDER-2", "name": "自动喂食器", "qty": 1, "unit_price": amount}
    status, answer = await post_generic(client, return_body(amount=amount, items=[item]), clock)
    assert status == 202, answer
    await settle(client.app)
    case_id: str = answer["case_id"]
    return case_id


async def click(client: Client, payload: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    resp = await client.post(card_path(), json=payload)
    return resp.status, await resp.json()


async def message(
    client: Client, signer: DingtalkSigner, payload: dict[str, Any], **headers: Any
) -> tuple[int, dict[str, Any]]:
    resp = await client.post(
        "/callbacks/dingtalk", data=json.dumps(payload), headers=signer.headers(**headers)
    )
    return resp.status, await resp.json()


async def case_status(client: Client, case_id: str) -> str:
    async with client.app[CTX].db.read() as session:
        case = await session.get(Case, case_id)
        assert case is not None
        return case.status


async def count(client: Client, model: Any, *where: Any) -> int:
    async with client.app[CTX].db.read() as session:
        return int(await session.scalar(select(func.count()).select_from(model).where(*where)))


def lead_card(fake: FakeDingtalk, lead: str) -> dict[str, Any]:
    (card,) = fake.cards_to(lead)
    return card


async def test_132_yuan_case_is_approved_from_a_dingtalk_card(
    client: Client, clock: FakeClock, fake: FakeDingtalk, signer: DingtalkSigner
) -> None:
    case_id = await open_case(client, clock)
    assert await case_status(client, case_id) == "pending_approval"
    for lead in LEADS:
        card = lead_card(fake, lead)
        params = card["params"]
        assert card["kind"] == "IM_ROBOT" and card["callbackType"] == "HTTP"
        assert case_id in params["title"] and params["closed"] == "false"
        buttons = json.loads(params["buttons"])
        assert [b["text"] for b in buttons] == ["同意", "驳回", "转交"]
        assert [b["action"] for b in buttons] == ["approve", "reject", "transfer"]
        assert "处理时限" in params["content"]
    body = fake.deliveries[0]
    assert body["cardTemplateId"] == TEMPLATE_ID and body["callbackRouteKey"] == "returnhub"

    clock.advance(120)
    wang = lead_card(fake, "manager1001")["outTrackId"]
    status, answer = await click(client, signer.click("manager1001", wang, "approve"))
    assert status == 200
    # The callback's own answer already shows the decision on the clicker's card.
    shown = answer["cardData"]["cardParamMap"]
    assert shown["closed"] == "true" and "王组长" in shown["summary"]
    assert json.loads(shown["buttons"]) == []
    await settle(client.app)

    assert await case_status(client, case_id) == "refund_pending"
    assert {u["outTrackId"] for u in fake.updates} == {
        lead_card(fake, lead)["outTrackId"] for lead in LEADS
    }
    for lead in LEADS:
        params = lead_card(fake, lead)["params"]
        assert params["closed"] == "true" and "已由 王组长 于" in params["status"]
        assert params["title"].endswith("已同意")
    assert any(case_id in t and "已同意" in t for t in fake.texts_to("manager1001"))


async def test_the_same_click_twice_has_one_effect(
    client: Client, clock: FakeClock, fake: FakeDingtalk, signer: DingtalkSigner
) -> None:
    case_id = await open_case(client, clock)
    payload = signer.click("manager1004", lead_card(fake, "manager1004")["outTrackId"], "approve")
    first, second = await asyncio.gather(click(client, payload), click(client, payload))
    assert first[0] == second[0] == 200
    await settle(client.app)
    assert (await click(client, payload))[0] == 200  # a late re-send after the effect
    await settle(client.app)
    assert await case_status(client, case_id) == "refund_pending"
    assert await count(client, AuditEvent, AuditEvent.action == "approve") == 1
    assert len(fake.updates) == len(LEADS)


async def test_a_late_click_is_told_who_decided_and_when(
    client: Client, clock: FakeClock, fake: FakeDingtalk, signer: DingtalkSigner
) -> None:
    case_id = await open_case(client, clock)
    liu = lead_card(fake, "manager1004")["outTrackId"]
    late = signer.click("manager1004", liu, "reject")
    await click(
        client,
        signer.click("manager1001", lead_card(fake, "manager1001")["outTrackId"], "approve"),
    )
    await settle(client.app)
    status, answer = await click(client, late)
    await settle(client.app)
    assert status == 200 and answer["cardData"]["cardParamMap"]["closed"] == "true"
    assert await case_status(client, case_id) == "refund_pending"
    assert any("已由 王组长 于" in t for t in fake.texts_to("manager1004"))


async def test_a_click_by_someone_without_the_role_changes_nothing(
    client: Client, clock: FakeClock, fake: FakeDingtalk, signer: DingtalkSigner
) -> None:
    case_id = await open_case(client, clock)
    wang = lead_card(fake, "manager1001")["outTrackId"]
    status, answer = await click(client, signer.click("staff2001", wang, "approve"))  # 小周
    await settle(client.app)
    assert status == 200 and answer["cardData"]["cardParamMap"]["closed"] == "false"
    assert await case_status(client, case_id) == "pending_approval"
    assert fake.updates == []
    assert any("客服组长" in t for t in fake.texts_to("staff2001"))


async def test_refused_card_callbacks_store_nothing(
    client: Client, clock: FakeClock, fake: FakeDingtalk, signer: DingtalkSigner
) -> None:
    case_id = await open_case(client, clock)
    wang = lead_card(fake, "manager1001")["outTrackId"]
    good = signer.click("manager1001", wang, "approve")
    inbox = await count(client, InboxKey)
    resp = await client.post("/callbacks/dingtalk/card?key=forged", json=good)
    assert resp.status == 403 and "key" in (await resp.json())["error"]
    resp = await client.post("/callbacks/dingtalk/card", json=good)
    assert resp.status == 403
    for broken in (
        {**good, "content": "not json"},
        {**good, "content": json.dumps({"cardPrivateData": {}})},
        {**good, "userId": ""},
        {k: v for k, v in good.items() if k != "outTrackId"},
    ):
        status, answer = await click(client, broken)
        assert status == 400 and answer["error"], broken
    resp = await client.post(card_path(), data=b"{", headers={"Content-Type": "application/json"})
    assert resp.status == 400
    await settle(client.app)
    assert await count(client, InboxKey) == inbox
    assert await case_status(client, case_id) == "pending_approval"
    # A forged action the card does not carry: no token for it, a polite refusal.
    status, _ = await click(client, signer.click("manager1001", wang, "ok"))
    await settle(client.app)
    assert status == 200 and await case_status(client, case_id) == "pending_approval"
    assert "该按钮无效或已过期" in fake.texts_to("manager1001")


async def test_forged_stale_or_foreign_robot_messages_are_refused(
    client: Client, clock: FakeClock, fake: FakeDingtalk, signer: DingtalkSigner
) -> None:
    before = await count(client, InboxKey)
    text = signer.text("manager1001", "/帮助")
    status, answer = await message(client, signer, text, secret="wrong-secret")
    assert (status, answer["error"]) == (403, "sign mismatch")
    stale = (clock.timestamp() - 3601) * 1000
    status, answer = await message(client, signer, text, timestamp=stale)
    assert status == 403 and "replay window" in answer["error"]
    status, _ = await message(
        client, signer, signer.text("manager1001", "/帮助", robot_code="other")
    )
    assert status == 403
    resp = await client.post("/callbacks/dingtalk", json=text)  # no headers at all
    assert resp.status == 400
    headers = signer.headers()
    resp = await client.post("/callbacks/dingtalk", data=json.dumps(text), headers=headers)
    assert resp.status == 200
    # The same (timestamp, sign) with another body: a replay of a captured signature.
    other = signer.text("manager1001", "/同意 RC-261123-0001")
    resp = await client.post("/callbacks/dingtalk", data=json.dumps(other), headers=headers)
    assert resp.status == 403 and "replay" in (await resp.json())["error"]
    await settle(client.app)
    assert await count(client, InboxKey) == before + 1
    assert any("可用命令" in t for t in fake.texts_to("manager1001"))


async def test_a_stranger_gets_a_polite_reply_and_nothing_else(
    client: Client, clock: FakeClock, fake: FakeDingtalk, signer: DingtalkSigner
) -> None:
    case_id = await open_case(client, clock)
    rows = await count(client, OutboxMessage)
    status, _ = await message(client, signer, signer.text("stranger9", f"/同意 {case_id}"))
    assert status == 200
    await settle(client.app)
    assert await case_status(client, case_id) == "pending_approval"
    assert fake.texts_to("stranger9") == ["您还不是售后机器人的成员，请联系管理员添加"]
    assert await count(client, OutboxMessage) == rows + 1


async def test_replies_use_the_session_webhook_while_it_is_valid(
    client: Client, clock: FakeClock, fake: FakeDingtalk, signer: DingtalkSigner
) -> None:
    await message(client, signer, signer.text("manager1001", "/帮助"))
    await settle(client.app)
    assert len(fake.session_replies) == 1 and not fake.sends
    clock.advance(2 * 3600)  # the session webhook (90 min) has expired: the OpenAPI
    await message(client, signer, signer.text("manager1001", "/帮助", group="cidGroup1"))
    await settle(client.app)
    assert len(fake.session_replies) == 1
    (send,) = fake.sends
    assert send["userIds"] == ["manager1001"] and send["msgKey"] == "sampleText"


async def test_group_messages_without_an_at_and_unknown_types(
    client: Client, clock: FakeClock, fake: FakeDingtalk, signer: DingtalkSigner
) -> None:
    quiet = signer.text("manager1001", "/帮助", group="cidGroup1", at_robot=False)
    assert (await message(client, signer, quiet))[0] == 200
    video = signer.message(
        "manager1001", "video", {"content": {"downloadCode": "v1", "duration": 3}}
    )
    odd = signer.message("manager1001", "sticker-2030", {"content": {"whatever": [1]}})
    for payload in (video, odd, odd):
        assert (await message(client, signer, payload))[0] == 200
    await settle(client.app)
    replies = fake.texts_to("manager1001")
    assert len(replies) == 2 and all("看不懂这类消息" in t for t in replies)


async def test_a_failed_recipient_is_retried_and_not_lost(
    client: Client, clock: FakeClock, fake: FakeDingtalk, signer: DingtalkSigner
) -> None:
    fake.fail_recipient("manager1004")
    await open_case(client, clock)
    assert fake.cards_to("manager1004") == []  # created, not delivered: a 200 all the same
    async with client.app[CTX].db.read() as session:
        row = (
            await session.scalars(
                select(OutboxMessage).where(OutboxMessage.destination == "dingtalk:manager1004")
            )
        ).one()
    assert row.status == "pending" and "not delivered" in row.last_error
    clock.advance(3600)
    await settle(client.app)
    assert len(fake.cards_to("manager1004")) == 1  # delivered again, the same instance
    assert "card/instances/deliver" in fake.calls
    assert len(fake.deliveries) == len(LEADS)


async def test_token_expiry_refreshes_once_and_every_call_carries_the_header(
    client: Client, clock: FakeClock, fake: FakeDingtalk, signer: DingtalkSigner
) -> None:
    await open_case(client, clock)
    fetched = fake.token_fetches
    fake.expire_tokens()
    wang = lead_card(fake, "manager1001")["outTrackId"]
    await click(client, signer.click("manager1001", wang, "approve"))
    await settle(client.app)
    assert fake.token_fetches == fetched + 1
    assert len(fake.updates) == len(LEADS)


async def test_a_chat_command_decision_updates_every_dingtalk_copy(
    client: Client, clock: FakeClock, fake: FakeDingtalk, signer: DingtalkSigner
) -> None:
    case_id = await open_case(client, clock)
    wang = lead_card(fake, "manager1001")["outTrackId"]
    stale = signer.click("manager1001", wang, "approve")  # a copy not yet refreshed
    status, _ = await message(client, signer, signer.text("manager1004", f"/同意 {case_id}"))
    assert status == 200
    await settle(client.app)
    assert await case_status(client, case_id) == "refund_pending"
    for lead in LEADS:
        params = lead_card(fake, lead)["params"]
        assert params["closed"] == "true" and "已由 刘组长 于" in params["status"]
    # The stale card clicked afterwards answers with the closed card, and says who.
    _, answer = await click(client, stale)
    await settle(client.app)
    assert answer["cardData"]["cardParamMap"]["closed"] == "true"
    assert any("已由 刘组长 于" in t for t in fake.texts_to("manager1001"))
