"""The channel's deadline through the generic webhook (`deadline_at`), and the SLA in
the read API (`sla_due_at`, `sla_breached`, `deadline_at`, each step's `due_at`)."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from bot.app import create_app
from storage.db import Database
from tests.http.generic_cases import load
from tests.support import (
    Client,
    FakeClock,
    MakeClient,
    make_settings,
    post_generic,
    return_body,
    table_counts,
)

TOKEN = "api-token-0123456789"
MID = {
    "amount": "132.00",
    "items": [{"sku": "F", "name": "喂食器", "qty": 1, "unit_price": "132.00"}],
}


async def _client(db: Database, tmp_path: Path, clock: FakeClock, make: MakeClient) -> Client:
    settings = make_settings(tmp_path, db.url, api_token=TOKEN)
    return await make(create_app(settings, clock=clock, background=False))


async def test_deadline_at_caps_the_due_time_and_shows_in_the_api(
    db: Database, tmp_path: Path, aiohttp_client: MakeClient
) -> None:
    clock = FakeClock()  # Monday 10:00 in Shanghai
    client = await _client(db, tmp_path, clock, aiohttp_client)
    body = return_body(**MID, deadline_at="2026-11-23T13:00:00+08:00")
    status, answer = await post_generic(client, body, clock)
    assert status == 202, answer
    case = await load(client, answer["case_id"])
    assert case.channel_deadline_at is not None
    auth = {"Authorization": f"Bearer {TOKEN}"}
    resp = await client.get(f"/api/cases/{case.id}", headers=auth)
    data = await resp.json()
    assert data["deadline_at"] == "2026-11-23T13:00:00+08:00"
    assert data["sla_due_at"] == "2026-11-23T11:00:00+08:00"  # 2 h before the platform
    assert data["steps"][0]["due_at"] == "2026-11-23T11:00:00+08:00"
    assert data["sla_breached"] is False
    clock.advance(timedelta(hours=1, minutes=1).total_seconds())
    listed = await (await client.get("/api/cases", headers=auth)).json()
    assert listed["cases"][0]["sla_breached"] is True


async def test_a_malformed_deadline_is_refused_and_stores_nothing(
    db: Database, tmp_path: Path, aiohttp_client: MakeClient
) -> None:
    clock = FakeClock()
    client = await _client(db, tmp_path, clock, aiohttp_client)
    before = await table_counts(db)
    for bad in ("2026-11-23T13:00:00", "tomorrow", 1764000000):
        status, answer = await post_generic(client, return_body(**MID, deadline_at=bad), clock)
        assert status == 422 and "deadline_at" in answer["error"], answer
    assert await table_counts(db) == before
