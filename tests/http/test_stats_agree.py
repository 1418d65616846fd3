"""The dashboard, /统计, the read API and the daily digest show the same numbers for
the same period (issue 13's "Must show"), on both engines.

One fixture (tests/http/test_digest.py's Monday), one period (yesterday, seen from
Tuesday 09:05 in Shanghai), four readings: the dashboard page's tiles, the /统计 昨天
reply, counts over every page of `GET /api/cases`, and the digest's markdown.
"""

from __future__ import annotations

import re
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from bot.app import create_app
from bot.appkeys import CTX
from bot.events import ChatMessage, Sender
from handlers.commands import on_chat_message
from handlers.digest_text import build, markdown
from storage.db import Database
from tests.http.test_dashboard import tile
from tests.http.test_digest import at, seed
from tests.support import Client, FakeClock, MakeClient, make_settings
from tests.unit.test_flow import texts_to

TOKEN = "agree-token-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
DAY = date(2026, 11, 23)


@pytest.fixture
async def client(db: Database, tmp_path: Path, aiohttp_client: MakeClient) -> Client:
    settings = make_settings(tmp_path, db.url, api_token=TOKEN)
    app = create_app(settings, clock=FakeClock(at(24, 9, 5)), background=False)
    test_client = await aiohttp_client(app)
    await seed(app[CTX].db)
    return test_client


async def every_case(client: Client) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    params = {"limit": "2"}  # small pages: the count must survive paging
    while True:
        resp = await client.get("/api/cases", params=params, headers=AUTH)
        assert resp.status == 200
        page = await resp.json()
        found += page["cases"]
        if not page.get("next_cursor"):
            return found
        params = {"limit": "2", "cursor": page["next_cursor"]}


def stats_line(reply: str, label: str) -> str:
    (line,) = [x for x in reply.splitlines() if x.startswith(label)]
    return line


async def test_dashboard_stats_api_and_digest_agree_for_yesterday(client: Client) -> None:
    ctx = client.app[CTX]
    page = await client.get("/dashboard", params={"period": "yesterday"}, headers=AUTH)
    assert page.status == 200
    html = await page.text()
    await on_chat_message(ChatMessage("agree1", Sender("console", "王组长"), "/统计 昨天"), ctx)
    reply = (await texts_to(ctx.db, "王组长"))[-1]
    cases = await every_case(client)
    async with ctx.db.read() as session:
        digest = markdown(await build(session, ctx, ctx.now()))

    # New cases of the day.
    made = [c for c in cases if datetime.fromisoformat(c["created_at"]).date() == DAY]
    assert tile(html, "new") == "5" == str(len(made))
    assert stats_line(reply, "新增售后") == "新增售后：5 单"
    assert "**新增售后**：5 单" in digest
    # What waits now, by stage (the API's statuses; /统计 names each status).
    by_status: dict[str, int] = {}
    for c in cases:
        by_status[c["status"]] = by_status.get(c["status"], 0) + 1
    assert tile(html, "pending_review") == str(by_status["pending_approval"]) == "2"
    assert tile(html, "on_hold") == str(by_status["on_hold"]) == "1"
    assert tile(html, "awaiting_inspection") == str(by_status["received"]) == "1"
    back = by_status.get("awaiting_return", 0) + by_status.get("in_transit", 0)
    assert tile(html, "awaiting_return") == str(back) == "1"
    pending = stats_line(reply, "处理中")
    assert "待审批 2" in pending and "异常挂起 1" in pending
    assert "**待审批**：2 单" in digest and "**异常挂起**：1 单" in digest
    assert "**待验货**：1 单" in digest and "**待寄回**：1 单" in digest
    # Money: waiting for the refund now, and released during the day.
    waiting = sum(Decimal(c["amount"]) for c in cases if c["status"] == "refund_pending")
    assert tile(html, "refund_pending") == f"¥{waiting:.2f}" == "¥29.90"
    assert "**待退款金额**：¥29.90" in digest
    assert tile(html, "refunded") == "¥88.00"
    assert stats_line(reply, "已退款") == "已退款：1 单，¥88.00"
    assert "**已退款**：1 单，¥88.00" in digest
    # Auto-approved share and SLA breaches.
    auto = [c for c in made if c["tier"] == "auto"]
    assert tile(html, "auto_share") == f"{len(auto) / len(made):.0%}" == "40%"
    assert "自动通过 40%" in digest
    assert tile(html, "sla_breaches") == "1"
    assert stats_line(reply, "SLA 超时") == "SLA 超时：1 次"
    assert "**SLA 超时**：1 次" in digest
    # Top reasons: /统计 and the digest list the same codes with the same counts.
    top = re.findall(r"([a-z_]+\.[a-z_]+)（[^）]*） (\d+)", stats_line(reply, "退货原因"))
    assert top == re.findall(r"·([a-z_]+\.[a-z_]+)　(\d+) 单", digest)
    assert top == [("quality.defect", "2"), ("size.too_small", "2"), ("logistics.damaged", "1")]
