"""The seeds' warehouse story, whole, on the console and on WeCom (issue 9 "Must show").

A 2880-yuan automatic feeder return is approved by the ops director, the buyer ships
(generic webhook `buyer_shipped`), the warehouse scans the waybill and finds 缺配件
(滤网): the refund is held, risk gets the alert with the buyer's history showing the
two earlier incidents, the buyer is flagged 潜在滥用权益 at this third one, a 35-yuan
deduction is chosen and confirmed, and a partial refund of 2845.00 reaches the OMS
exactly once although its first delivery attempt fails.

Each test drives the app only from outside: signed webhooks, console posts or
WeCom callbacks sealed with wechatpy's crypto; the OMS and WeCom are the fakes.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any, Protocol

import pytest
from sqlalchemy import select

from bot.app import create_app
from bot.appkeys import CTX, WORKER
from storage.db import Database
from storage.models import AuditEvent, Case, Customer, OutboxMessage
from tests.fakes.oms import FakeOms
from tests.fakes.wecom import FakeWecom, running
from tests.fakes.wecom_callbacks import CallbackSigner, settle, with_wecom
from tests.support import MEMBERS, Client, FakeClock, MakeClient, make_settings, post_generic

API_TOKEN = "story-api-token-0123456789"
BUYER = {"ref": "buyer-8812", "nick": "喵星人"}
USERID = {name: wecom for name, _, wecom, _ in MEMBERS}


class Driver(Protocol):
    """What a person does in the chat platform under test."""

    client: Client

    async def say(self, name: str, text: str) -> None: ...

    async def press(self, name: str, case_id: str, label: str) -> None: ...

    async def texts(self, name: str) -> list[str]: ...

    async def card(self, name: str, case_id: str, title: str) -> str:
        """The newest card about `case_id` whose title has `title`, as shown (JSON text)."""
        ...


class Console:
    def __init__(self, client: Client) -> None:
        self.client = client

    async def _messages(self, name: str) -> list[dict[str, Any]]:
        await self.client.app[WORKER].drain()
        resp = await self.client.get("/console/api/messages", params={"user": name, "after": "0"})
        assert resp.status == 200, await resp.text()
        messages: list[dict[str, Any]] = (await resp.json())["messages"]
        return messages

    async def _post(self, path: str, body: dict[str, Any]) -> None:
        resp = await self.client.post(path, json={**body, "uuid": str(uuid.uuid4())})
        assert resp.status == 200, await resp.text()
        await self.client.app[WORKER].drain()

    async def say(self, name: str, text: str) -> None:
        await self._post("/console/api/send", {"user": name, "text": text})

    async def _card(self, name: str, case_id: str, title: str) -> dict[str, Any]:
        return next(
            m["card"]
            for m in reversed(await self._messages(name))
            if m["type"] == "card" and m["card"]["case_id"] == case_id
            and title in m["card"]["title"]
        )  # fmt: skip

    async def press(self, name: str, case_id: str, label: str) -> None:
        found = next(
            m["card"]
            for m in reversed(await self._messages(name))
            if m["type"] == "card" and m["card"]["case_id"] == case_id
            and any(b["label"] == label for b in m["card"]["buttons"])
        )  # fmt: skip
        token = next(b["token"] for b in found["buttons"] if b["label"] == label)
        await self._post("/console/api/click", {"user": name, "token": token, "label": label})

    async def texts(self, name: str) -> list[str]:
        return [
            m["text"]
            for m in await self._messages(name)
            if m["type"] == "text" and m["direction"] == "out"
        ]

    async def card(self, name: str, case_id: str, title: str) -> str:
        return json.dumps(await self._card(name, case_id, title), ensure_ascii=False)


class Wecom:
    def __init__(self, client: Client, fake: FakeWecom, signer: CallbackSigner) -> None:
        self.client, self.fake, self.signer = client, fake, signer
        self.msg_id = 90000

    async def _post(self, inner: str) -> None:
        query, body = self.signer.seal(inner)
        resp = await self.client.post("/callbacks/wecom", params=query, data=body)
        assert resp.status == 200, await resp.text()
        await settle(self.client.app)

    async def say(self, name: str, text: str) -> None:
        self.msg_id += 1
        await self._post(self.signer.text(USERID[name], text, msg_id=self.msg_id))

    def _cards(self, name: str, case_id: str) -> list[dict[str, Any]]:
        return [c for c in self.fake.cards_to(USERID[name]) if case_id in c["main_title"]["title"]]

    async def press(self, name: str, case_id: str, label: str) -> None:
        card = next(
            c
            for c in reversed(self._cards(name, case_id))
            if any(b["text"] == label for b in c["button_list"])
        )
        key = next(b["key"] for b in card["button_list"] if b["text"] == label)
        user = USERID[name]
        code = self.fake.click_code(user, card["task_id"])
        await self._post(self.signer.card_event(user, key, card["task_id"], code))

    async def texts(self, name: str) -> list[str]:
        return self.fake.texts_to(USERID[name])

    async def card(self, name: str, case_id: str, title: str) -> str:
        card = next(c for c in reversed(self._cards(name, case_id)) if title in str(c))
        return json.dumps(card, ensure_ascii=False)


def body(n: int, status: str, amount: str, sku: str, name: str, **extra: Any) -> dict[str, Any]:
    item = {"sku": sku, "name": name, "qty": 1, "unit_price": amount}
    return {
        "event_id": f"story-{n}-{status}",
        "shop": "main-store",
        "external_id": f"AS2026{n:05d}",
        "order_id": f"SO2026{n:05d}",
        "kind": "return_refund",
        "status": status,
        "amount": amount,
        "reason_code": "quality.defect",
        "reason_text": "定时出粮失灵",
        "buyer": BUYER,
        "items": [item],
        **extra,
    }


async def submit(client: Client, clock: FakeClock, data: dict[str, Any]) -> str:
    status, answer = await post_generic(client, data, clock)
    assert status == 202, answer
    await settle(client.app)
    case_id: str = answer["case_id"]
    return case_id


async def status_of(client: Client, case_id: str) -> str:
    async with client.app[CTX].db.read() as session:
        case = await session.get(Case, case_id)
        assert case is not None
        return case.status


async def earlier_incident(driver: Driver, clock: FakeClock, n: int) -> str:
    """A small return of the same buyer (auto-approved), its parcel found short of a part."""
    waybill = f"SF88000000{n}"
    data = body(n, "requested", "39.00", "FEEDER-BOWL", "喂食器食盆", return_waybill=waybill)
    case_id = await submit(driver.client, clock, data)
    await driver.say("小周", waybill)
    await driver.press("小周", case_id, "缺配件")
    await driver.say("小周", "食盆")
    assert await status_of(driver.client, case_id) == "on_hold"
    clock.advance(timedelta(days=40).total_seconds())
    return case_id


async def the_story(driver: Driver, clock: FakeClock, oms: FakeOms) -> None:
    client = driver.client
    earlier = [await earlier_incident(driver, clock, n) for n in (1, 2)]

    # The return: 2880 yuan, the director tier; the ops director approves on the card.
    feeder = ("FEEDER-PRO", "自动喂食器 Pro")
    case_id = await submit(client, clock, body(3, "requested", "2880.00", *feeder, version="1"))
    assert await status_of(client, case_id) == "pending_approval"
    approval = await driver.card("李总监", case_id, "售后审批")
    assert "历史售后 2 次" in approval
    await driver.press("李总监", case_id, "同意")
    assert await status_of(client, case_id) == "awaiting_return"

    # The buyer ships; the warehouse scans the waybill the OMS reported.
    shipped = body(3, "buyer_shipped", "2880.00", *feeder, version="2",
                   return_waybill="SF1300000000003", carrier="SF")  # fmt: skip
    await submit(client, clock, shipped)
    assert await status_of(client, case_id) == "in_transit"
    await driver.say("小周", "SF1300000000003")
    assert await status_of(client, case_id) == "received"
    await driver.press("小周", case_id, "缺配件")
    asked = (await driver.texts("小周"))[-1]
    assert "滤网、电源适配器、食盆" in asked and "照片" in asked
    await driver.say("小周", "滤网")
    assert await status_of(client, case_id) == "on_hold"
    assert "退款已暂停并通知风控" in (await driver.texts("小周"))[-1]

    # Risk's alert: the finding, the incidents (this one is the third), the flag.
    alert = await driver.card("陈风控", case_id, "风控提醒")
    assert "缺配件（滤网）" in alert
    assert f"缺配件 3 次（{earlier[0]}、{earlier[1]}、{case_id}）" in alert
    assert "潜在滥用权益" in alert
    assert "扣款退款：扣除滤网 ¥35.00，退款 ¥2845.00" in alert
    async with client.app[CTX].db.read() as session:
        buyer = (await session.scalars(select(Customer))).one()
        flags = list(
            await session.scalars(select(AuditEvent).where(AuditEvent.action == "flag_customer"))
        )
    assert buyer.flagged and buyer.flag_reason == "潜在滥用权益：180 天内缺配件 3 次"
    assert [f.case_id for f in flags] == [case_id], "flagged at the third incident, once"

    # The deduction: 滤网 from the price list, then the amounts confirmed on a second card.
    oms.down(503)
    await driver.press("陈风控", case_id, "扣款退款")
    assert "滤网 ¥35.00" in (await driver.texts("陈风控"))[-1]
    await driver.say("陈风控", "滤网 寄回的包裹中缺少滤网，买家同意扣款")
    confirm = await driver.card("陈风控", case_id, "确认扣款退款")
    assert "¥2845.00" in confirm and "¥35.00" in confirm and "¥2880.00" in confirm
    assert await status_of(client, case_id) == "on_hold", "nothing moves before 确认"
    await driver.press("陈风控", case_id, "确认扣款退款")
    assert "退款 ¥2845.00 已提交渠道" in (await driver.texts("陈风控"))[-1]
    clock.advance(5)  # a later click, not WeCom redelivering the first one
    await driver.press("陈风控", case_id, "确认扣款退款")  # a second click: nothing more
    assert "无需重复操作" in (await driver.texts("陈风控"))[-1]
    assert await status_of(client, case_id) == "refund_pending"

    # The first delivery failed; after the backoff the OMS takes it, once.
    assert oms.failed >= 1 and oms.names(case_id).count("refund_released") == 0
    oms.up()
    clock.advance(1000)
    await settle(client.app)
    refunds = [e for e in oms.of_case(case_id) if e["event"] == "refund_released"]
    assert [(r["amount"], r["deduction"], r["refund_id"]) for r in refunds] == [
        ("2845.00", "35.00", case_id)
    ]
    accepted = [d for d in oms.deliveries if d.body["event"] == "refund_released"]
    assert len(accepted) == 1 and accepted[0].body["case_id"] == case_id
    async with client.app[CTX].db.read() as session:
        rows = list(
            await session.scalars(
                select(OutboxMessage).where(
                    OutboxMessage.kind == "channel.refund", OutboxMessage.case_id == case_id
                )
            )
        )
    assert [(r.status, r.attempts >= 2) for r in rows] == [("sent", True)]
    assert await status_of(client, case_id) == "refunded"

    resp = await client.get(
        f"/api/cases/{case_id}", headers={"Authorization": f"Bearer {API_TOKEN}"}
    )
    shown = await resp.json()
    assert (shown["amount"], shown["deduction"], shown["refund_amount"]) == (
        "2880.00",
        "35.00",
        "2845.00",
    )
    actions = [e["action"] for e in shown["events"]]
    assert "flag_customer" in actions and "resolve_deduct" in actions

    # The flag holds: the buyer's next small return is not auto-approved.
    small = body(4, "requested", "29.90", "FEEDER-BOWL", "喂食器食盆")
    later = await submit(client, clock, small)
    assert await status_of(client, later) == "pending_approval"
    assert "潜在滥用权益" in await driver.card("王组长", later, "售后审批")


@pytest.fixture
async def console(
    db: Database, tmp_path: Path, clock: FakeClock, oms: FakeOms, aiohttp_client: MakeClient
) -> Console:
    settings = make_settings(
        tmp_path, db.url, callback_url=oms.url, api_token=API_TOKEN, demo=True
    )
    return Console(await aiohttp_client(create_app(settings, clock=clock, background=False)))


async def test_the_warehouse_story_on_the_console(
    console: Console, clock: FakeClock, oms: FakeOms
) -> None:
    await the_story(console, clock, oms)


@pytest.fixture
async def fake() -> AsyncIterator[FakeWecom]:
    async with running(FakeWecom(users=set(USERID.values()))) as server:
        yield server


async def test_the_warehouse_story_on_wecom(
    db: Database,
    tmp_path: Path,
    clock: FakeClock,
    oms: FakeOms,
    fake: FakeWecom,
    signer: CallbackSigner,
    aiohttp_client: MakeClient,
) -> None:
    base = make_settings(
        tmp_path, db.url, console=False, callback_url=oms.url, api_token=API_TOKEN
    )
    app = create_app(with_wecom(base, fake.url), clock=clock, background=False)
    await the_story(Wecom(await aiohttp_client(app), fake, signer), clock, oms)
