"""The dispute scripts as people use them: a CS agent in the console and over WeCom
types /话术 and gets the reply filled with the case's product; /同意 from the agent is
refused; an operator drops a new scenario file into the running server and it answers
on the next message, with no restart."""

from __future__ import annotations

import dataclasses
import shutil
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.orm import selectinload

from bot.app import create_app
from bot.appkeys import CTX, WORKER
from bot.demo import demo_settings, seed
from bot.settings import config_dir
from storage.db import Database
from storage.models import Case, DisputeEvent
from tests.fakes.wecom import FakeWecom, running
from tests.fakes.wecom_callbacks import CallbackSigner, settle
from tests.http.test_wecom_flow import click, post
from tests.support import Client, FakeClock, MakeClient, post_generic, return_body

NEW_SCENARIO = (
    'title = "补发赠品"\naliases = ["赠品", "gift"]\napplies = "买家反映少了赠品"\n'
    'reply = "亲，{{ 商品 }}的赠品我们今天为您补发（订单 {{ 订单号 }}），请注意查收。"\n'
    'sop = ["在 ERP 建补发单"]\n'
)


@pytest.fixture
async def console(tmp_path: Path, db: Database, aiohttp_client: MakeClient) -> Client:
    """The demo (console on) with its scripts in an editable directory beside its config."""
    var = tmp_path / "var"
    var.mkdir()
    shutil.copytree(config_dir() / "scripts", var / "scripts")
    base = demo_settings(8080, var)
    settings = dataclasses.replace(base, database=dataclasses.replace(base.database, url=db.url))
    client = await aiohttp_client(create_app(settings, background=False))
    await seed(client.app[CTX])
    await client.app[WORKER].drain()
    return client


async def send(client: Client, user: str, text: str) -> str:
    """`user` types `text` in the console; the bot's last answer to them."""
    body = {"user": user, "text": text, "uuid": str(uuid.uuid4())}
    resp = await client.post("/console/api/send", json=body)
    assert resp.status == 200, await resp.text()
    await client.app[WORKER].drain()
    resp = await client.get("/console/api/messages", params={"user": user, "after": "0"})
    messages: list[dict[str, Any]] = (await resp.json())["messages"]
    texts = [m["text"] for m in messages if m["type"] == "text" and m["direction"] == "out"]
    return texts[-1]


async def a_case(client: Client, status: str | None = None) -> Case:
    async with client.app[CTX].db.read() as session:
        query = select(Case).options(selectinload(Case.items)).order_by(Case.id)
        if status:
            query = query.where(Case.status == status)
        found = (await session.scalars(query)).first()
        assert found is not None and found.items
        return found


async def test_an_agent_in_the_console_gets_the_filled_reply(console: Client) -> None:
    case = await a_case(console)
    product = case.items[0].name
    listed = await send(console, "小美", "/话术")
    assert listed.startswith("话术场景") and "· 缺配件" in listed and "· 恶意退货嫌疑" in listed
    answer = await send(console, "小美", f"/话术 缺配件 {case.id} 配件=滤网 扣款=35")
    assert f"您退回的{product}缺少滤网，是否需要我们补发？若确认遗失，可扣除35元配件费" in answer
    async with console.app[CTX].db.read() as session:
        kept = (await session.scalars(select(DisputeEvent))).one()
    assert (kept.case_id, kept.actor, kept.scenario) == (case.id, "member:小美", "缺配件")
    assert kept.text in answer


async def test_an_agent_asking_to_approve_is_refused(console: Client) -> None:
    case = await a_case(console, "pending_approval")
    answer = await send(console, "小美", f"/同意 {case.id}")
    assert answer.startswith("您没有「客服组长/运营总监/财务总监」角色，不能使用 /同意")
    assert (await a_case(console, "pending_approval")).id == case.id  # still waiting


async def test_a_new_scenario_file_answers_at_once_without_a_restart(
    console: Client, tmp_path: Path
) -> None:
    case = await a_case(console)
    assert "· 补发赠品" not in await send(console, "小美", "/话术")
    (tmp_path / "var" / "scripts" / "补发赠品.toml").write_text(NEW_SCENARIO, encoding="utf-8")
    answer = await send(console, "小美", f"/话术 gift {case.id}")
    assert f"亲，{case.items[0].name}的赠品我们今天为您补发（订单 {case.order_id}）" in answer
    assert "1. 在 ERP 建补发单" in answer


@pytest.fixture
async def fake() -> AsyncIterator[FakeWecom]:
    users = {"wangzuzhang", "liuzuzhang", "lizongjian", "zhaocaiwu", "xiaozhou", "admin"}
    async with running(FakeWecom(users=users | {"xiaomei", "chenfengkong"})) as server:
        yield server


async def wecom_text(client: Client, signer: CallbackSigner, user: str, text: str, n: int) -> None:
    query, body = signer.seal(signer.text(user, text, msg_id=n))
    resp = await client.post("/callbacks/wecom", params=query, data=body)
    assert resp.status == 200
    await settle(client.app)


async def test_an_agent_over_wecom_gets_the_filled_reply_and_no_approval(
    wecom_client: Client, clock: FakeClock, fake: FakeWecom, signer: CallbackSigner
) -> None:
    item = {"sku": "FEEDER-2", "name": "自动喂食器", "qty": 1, "unit_price": "132.00"}
    status, answer = await post_generic(
        wecom_client, return_body(amount="132.00", items=[item]), clock
    )
    assert status == 202, answer
    await settle(wecom_client.app)
    case_id = answer["case_id"]
    await wecom_text(wecom_client, signer, "xiaomei", f"/话术 缺配件 {case_id}", 9001)
    reply = fake.texts_to("xiaomei")[-1]
    assert reply.startswith(f"【话术 · 缺配件】{case_id}")
    assert (
        "您退回的自动喂食器缺少滤网组件，是否需要我们补发？若确认遗失，可扣除35元配件费" in reply
    )
    await wecom_text(wecom_client, signer, "xiaomei", "＠售后机器人　/同意 " + case_id, 9002)
    assert "不能使用 /同意" in fake.texts_to("xiaomei")[-1]
    async with wecom_client.app[CTX].db.read() as session:
        held = await session.get(Case, case_id)
        assert held is not None and held.status == "pending_approval"


async def test_a_hold_over_wecom_suggests_the_script_and_records_the_buyers_answer(
    wecom_client: Client, clock: FakeClock, fake: FakeWecom, signer: CallbackSigner
) -> None:
    item = {"sku": "FEEDER-2", "name": "自动喂食器", "qty": 1, "unit_price": "49.90"}
    body = return_body(kind="return_refund", amount="49.90", items=[item])
    status, answer = await post_generic(wecom_client, body, clock)
    assert status == 202, answer
    case_id = answer["case_id"]
    shipped = return_body(
        kind="return_refund", amount="49.90", items=[item], status="buyer_shipped",
        return_waybill="SF5566778899", carrier="顺丰", version="2", event_id="oms-evt-2",
    )  # fmt: skip
    assert (await post_generic(wecom_client, shipped, clock))[0] == 202
    await settle(wecom_client.app)
    await wecom_text(wecom_client, signer, "xiaozhou", "SF5566778899", 9101)
    missing = await click(wecom_client, signer, fake, "xiaozhou", "xiaozhou", "缺配件")
    assert (await post(wecom_client, missing))[0] == 200
    await settle(wecom_client.app)
    assert "滤网、电源适配器、食盆" in fake.texts_to("xiaozhou")[-1]  # which part is missing?
    await wecom_text(wecom_client, signer, "xiaozhou", "滤网", 9102)

    risk = fake.cards_to("chenfengkong")[-1]
    assert [b["text"] for b in risk["button_list"]] == [
        "全额退款", "扣款退款", "驳回退款", "客户同意", "客户拒绝", "升级平台介入"
    ]  # fmt: skip
    assert "建议话术：缺配件：亲，您好！您退回的自动喂食器缺少滤网，" in risk["sub_title_text"]
    notice = fake.texts_to("xiaomei")[-1]
    assert notice.startswith(f"【验货异常】{case_id}") and "可扣除35元配件费" in notice

    agreed = await click(wecom_client, signer, fake, "chenfengkong", "chenfengkong", "客户同意")
    assert (await post(wecom_client, agreed))[0] == 200
    await settle(wecom_client.app)
    assert fake.texts_to("chenfengkong")[-1] == f"已记录 {case_id} 的纠纷结果：客户同意"
    async with wecom_client.app[CTX].db.read() as session:
        rows = list(await session.scalars(select(DisputeEvent).order_by(DisputeEvent.id)))
    assert [(r.kind, r.scenario, r.outcome) for r in rows] == [
        ("script", "缺配件", ""),
        ("outcome", "缺配件", "agreed"),
    ]
