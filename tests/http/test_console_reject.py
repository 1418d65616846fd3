"""驳回 through the console's HTTP API, as the page does it: the click carries no reason,
the bot asks in the chat (as in WeCom), the next message sent is the reason."""

from __future__ import annotations

import dataclasses
import uuid
from pathlib import Path
from typing import Any

import pytest

from bot.app import create_app
from bot.appkeys import CTX, WORKER
from bot.demo import demo_settings, seed
from storage.db import Database
from tests.support import Client, MakeClient


@pytest.fixture
async def client(tmp_path: Path, db: Database, aiohttp_client: MakeClient) -> Client:
    """The demo (console on, demo mode on loopback) on each test engine, seeded."""
    base = demo_settings(8080, tmp_path / "var")
    settings = dataclasses.replace(base, database=dataclasses.replace(base.database, url=db.url))
    client = await aiohttp_client(create_app(settings, background=False))
    await seed(client.app[CTX])
    await client.app[WORKER].drain()
    return client


async def chat(client: Client, user: str) -> list[dict[str, Any]]:
    """Everything in `user`'s console chat, after delivering what is due."""
    await client.app[WORKER].drain()
    resp = await client.get("/console/api/messages", params={"user": user, "after": "0"})
    assert resp.status == 200, await resp.text()
    messages: list[dict[str, Any]] = (await resp.json())["messages"]
    return messages


async def post(client: Client, path: str, body: dict[str, Any]) -> None:
    resp = await client.post(path, json={**body, "uuid": str(uuid.uuid4())})
    assert resp.status == 200, await resp.text()


def card_with(messages: list[dict[str, Any]], text: str) -> dict[str, Any]:
    return next(
        m["card"] for m in reversed(messages) if m["type"] == "card" and text in str(m["card"])
    )


def button(card: dict[str, Any], action: str) -> dict[str, str]:
    found: dict[str, str] = next(b for b in card["buttons"] if b["action"] == action)
    return found


def bot_texts(messages: list[dict[str, Any]]) -> list[str]:
    return [m["text"] for m in messages if m["type"] == "text" and m["direction"] == "out"]


async def test_reject_clicked_in_the_console_asks_in_the_chat(client: Client) -> None:
    card = card_with(await chat(client, "王组长"), "132.00")
    reject = button(card, "reject")
    await post(client, "/console/api/click", {"user": "王组长", "token": reject["token"]})
    messages = await chat(client, "王组长")
    case_id = card["case_id"]
    assert bot_texts(messages)[-1] == f"请直接回复驳回 {case_id} 的原因（发送 /取消 放弃）"
    assert not card_with(messages, "132.00")["closed"], "a click alone decides nothing"

    reason = "买家已确认商品可正常使用"
    await post(client, "/console/api/send", {"user": "王组长", "text": reason})
    messages = await chat(client, "王组长")
    assert bot_texts(messages)[-1] == f"已驳回 {case_id}"
    closed = card_with(messages, "132.00")
    assert closed["closed"] and closed["status"].endswith(f"驳回：{reason}")
    notice = bot_texts(await chat(client, "小美"))[-1]
    assert notice.startswith(f"【驳回通知】{case_id}") and reason in notice


async def test_risk_reject_clicked_in_the_console_asks_then_rejects(client: Client) -> None:
    await post(client, "/console/api/send", {"user": "小周", "text": "SF1401234567890"})
    inspection = card_with(await chat(client, "小周"), "SF1401234567890")
    missing = button(inspection, "missing_parts")
    await post(client, "/console/api/click", {"user": "小周", "token": missing["token"]})
    await post(client, "/console/api/send", {"user": "小周", "text": "电源适配器"})
    case_id = inspection["case_id"]
    risk = card_with(await chat(client, "陈风控"), case_id)
    reject = button(risk, "resolve_reject")
    await post(client, "/console/api/click", {"user": "陈风控", "token": reject["token"]})
    messages = await chat(client, "陈风控")
    assert bot_texts(messages)[-1].startswith(f"您正在驳回 {case_id} 的退款")
    assert not card_with(messages, case_id)["closed"]

    await post(client, "/console/api/send", {"user": "陈风控", "text": "缺的配件在箱底，已补拍"})
    messages = await chat(client, "陈风控")
    assert bot_texts(messages)[-1].startswith(f"已驳回 {case_id} 的退款")
    assert card_with(messages, case_id)["closed"]
