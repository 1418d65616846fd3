"""The dashboard on both engines: its figures against a hand-counted fixture, the page
showing them (and the same numbers /统计 computes), and who may open it."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from bot.app import create_app
from bot.appkeys import CTX
from handlers import dashboard_figures as figures
from handlers import reports
from storage.db import Database
from storage.models import ApprovalStep, Case, CaseItem, Customer, Member
from tests.support import Client, FakeClock, MakeClient, make_settings

TOKEN = "dash-token-0123456789"
NOW = datetime(2026, 11, 23, 6, 0, tzinfo=UTC)  # 14:00 in Asia/Shanghai
T = NOW.replace(tzinfo=None)


def a_case(n: int, status: str, hours_ago: float, **fields: object) -> Case:
    at = T - timedelta(hours=hours_ago)
    values: dict[str, object] = {
        "id": f"RC-261123-{n:04d}", "channel": "generic", "shop": "main-store",
        "external_id": f"E{n}", "order_id": f"O{n}", "kind": "return_refund",
        "amount_fen": 10000, "status": status, "created_at": at, "updated_at": at,
        "reason_code": "quality.defect", "tier": "cs_lead", "buyer_ref": f"b{n}",
    }  # fmt: skip
    values.update(fields)
    return Case(**values)


async def seed(db: Database) -> None:
    """Today (since 00:00 local = 16:00 UTC yesterday): 4 new; older ones before."""
    async with db.transaction() as session:
        lead = (await session.scalars(select(Member).where(Member.name == "王组长"))).one()
        cases = [
            a_case(1, "pending_approval", 2),
            a_case(2, "refund_pending", 3, tier="auto", kind="refund_only", amount_fen=2990,
                   reason_code="size.too_small", decided_at=T - timedelta(hours=3)),
            a_case(3, "received", 5, reason_code="quality.broken",
                   decided_at=T - timedelta(hours=4), received_at=T - timedelta(hours=1)),
            a_case(4, "on_hold", 6, decided_at=T - timedelta(hours=5)),
            a_case(5, "refunded", 30, refund_fen=8800, deduction_fen=1200,
                   decided_at=T - timedelta(hours=28), received_at=T - timedelta(hours=10),
                   refunded_at=T - timedelta(hours=2)),
            a_case(6, "awaiting_return", 40, decided_at=T - timedelta(hours=39)),
        ]  # fmt: skip
        session.add_all(cases)
        await session.flush()
        for case in cases:
            session.add(CaseItem(case_id=case.id, sku="FEEDER-2", name="自动喂食器", qty=1,
                                 unit_price_fen=case.amount_fen))  # fmt: skip
        session.add(ApprovalStep(case_id="RC-261123-0001", seq=1, role="cs_lead",
                                 state="pending", assignee_id=lead.id,
                                 opened_at=T - timedelta(hours=2),
                                 due_at=T - timedelta(hours=1)))  # fmt: skip
        session.add(Customer(channel="generic", buyer_ref="b4", nick="薅羊毛的喵",
                             flagged=True, flag_reason="同类异常 3 次"))  # fmt: skip


async def test_figures_match_a_hand_counted_day(client: Client) -> None:
    ctx = client.app[CTX]
    await seed(ctx.db)
    today = reports.period("today", ctx.now(), ctx.zone)
    async with ctx.db.read() as session:
        tiles = await figures.tiles(session, today)
        by_code = await figures.reasons(session, today)
        stages = {s.stage: s for s in await figures.stage_times(session, today)}
        late = await figures.breaches_by_assignee(session, today, ctx.now())
        flagged = await figures.flagged_buyers(session)
        days = await figures.trend(session, ctx.now(), 8)
        skus = await figures.reasons_by_sku(session, today)
    assert tiles == figures.Tiles(
        new=4, pending_review=1, awaiting_return=1, awaiting_inspection=1, on_hold=1,
        refund_pending_fen=2990, refunded_fen=8800, auto_share=0.25,
    )  # fmt: skip
    assert by_code == [("quality.defect", 2), ("quality.broken", 1), ("size.too_small", 1)]
    assert figures.first_level(by_code) == [("quality", 3), ("size", 1)]
    # review ended today (since 16:00 UTC) for #2 (0 h), #3 (1 h), #4 (1 h)
    assert (stages["review"].count, stages["review"].p50_hours) == (3, 1.0)
    assert stages["review"].p90_hours == 1.0
    # the parcel arrived today for #3 (3 h after approval) and #5 (18 h)
    assert (stages["return"].count, stages["return"].p50_hours) == (2, 3.0)
    assert stages["return"].p90_hours == 18.0
    assert (stages["refund"].count, stages["refund"].p50_hours) == (1, 8.0)  # #5
    assert late == [("cs_lead", "王组长", 1)]
    assert flagged == [("generic", "b4", "薅羊毛的喵", "同类异常 3 次")]
    # local days: #6 at 22:00 on the 21st, #5 at 08:00 on the 22nd, refunded at noon today
    assert days[-3:] == [("2026-11-21", 1, 0), ("2026-11-22", 1, 0), ("2026-11-23", 4, 1)]
    assert len(days) == figures.TREND_DAYS + 1 and days[0] == ("2026-10-24", 0, 0)
    assert skus[0] == ("FEEDER-2", "自动喂食器", "quality.defect", 2)


@pytest.fixture
async def client(db: Database, tmp_path: Path, aiohttp_client: MakeClient) -> Client:
    settings = make_settings(tmp_path, db.url, api_token=TOKEN)
    return await aiohttp_client(create_app(settings, clock=FakeClock(NOW), background=False))


def tile(html: str, kpi: str) -> str:
    found = re.search(rf'data-kpi="{kpi}"><span class="n">([^<]*)<', html)
    assert found, kpi
    return found.group(1)


async def test_the_page_shows_the_figures_and_agrees_with_stats(client: Client) -> None:
    await seed(client.app[CTX].db)
    resp = await client.get("/dashboard", headers={"Authorization": f"Bearer {TOKEN}"})
    assert resp.status == 200
    assert "script-src 'none'" in resp.headers["Content-Security-Policy"]
    html = await resp.text()
    assert tile(html, "new") == "4" and tile(html, "on_hold") == "1"
    assert tile(html, "refunded") == "¥88.00" and tile(html, "auto_share") == "25%"
    assert "<svg" in html and "自动喂食器" in html and "薅羊毛的喵" in html
    ctx = client.app[CTX]
    async with ctx.db.read() as session:
        stats = await reports.kpis(
            session, reports.period("today", ctx.now(), ctx.zone), ctx.now()
        )
    assert tile(html, "new") == str(stats.new)
    assert tile(html, "sla_breaches") == str(stats.sla_breaches)
    week = await client.get(
        "/dashboard", params={"period": "month", "channel": "taobao"},
        headers={"Authorization": f"Bearer {TOKEN}"},
    )  # fmt: skip
    assert tile(await week.text(), "new") == "0"


async def test_login_by_the_api_token_and_refusals(client: Client) -> None:
    first = await client.get("/dashboard")
    assert first.status == 200 and 'action="/dashboard/login"' in await first.text()
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    wrong = await client.post("/dashboard/login", data="token=nope", headers=form)
    assert wrong.status == 401 and "令牌不正确" in await wrong.text()
    right = await client.post(
        "/dashboard/login", data=f"token={TOKEN}", headers=form, allow_redirects=False
    )
    assert right.status == 303 and "returnhub_dashboard" in right.cookies
    page = await client.get("/dashboard")
    assert page.status == 200 and 'data-kpi="new"' in await page.text()
    bad = await client.get("/dashboard", params={"period": "year"})
    assert bad.status == 400
    client.session.cookie_jar.clear()
    forged = await client.get(
        "/dashboard", headers={"Cookie": "returnhub_dashboard=eyJ4Ijo.forged"}
    )
    assert 'data-kpi="new"' not in await forged.text()
    cross = await client.post("/dashboard/login", data=f"token={TOKEN}",
                              headers={**form, "Sec-Fetch-Site": "cross-site"})  # fmt: skip
    assert cross.status == 403
    out = await client.post("/dashboard/logout", allow_redirects=False)
    assert out.status == 303
