"""The integration API (/api/cases), /healthz and /metrics, on both engines."""

from __future__ import annotations

import asyncio
import base64
import json
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from bot.app import create_app
from bot.appkeys import CTX, WORKER
from storage.db import Database
from tests.support import (
    Client,
    FakeClock,
    MakeClient,
    make_settings,
    post_generic,
    return_body,
)
from tests.unit.test_read_pool import HANG, writer_held

TOKEN = "api-test-token-0123456789"
# A hand-made cursor in the shape the API once used: [created_at, case id] as base64 JSON.
FORGED_CURSOR = (
    base64.urlsafe_b64encode(json.dumps(["2099-01-01T00:00:00", "RC-999999-9999"]).encode())
    .decode()
    .rstrip("=")
)
AUTH = {"Authorization": f"Bearer {TOKEN}"}
CONTRACT_KEYS = {
    "id",
    "channel",
    "shop",
    "external_id",
    "order_id",
    "kind",
    "status",
    "tier",
    "amount",
    "refund_amount",
    "deduction",
    "reason_code",
    "reason_text",
    "buyer",
    "return_waybill",
    "carrier",
    "items",
    "steps",
    "evidence",
    "events",
    "created_at",
    "updated_at",
}


@pytest.fixture
async def client(
    db: Database, tmp_path: Path, clock: FakeClock, aiohttp_client: MakeClient
) -> Client:
    settings = make_settings(tmp_path, db.url, api_token=TOKEN)
    return await aiohttp_client(create_app(settings, clock=clock, background=False))


async def new_case(client: Client, clock: FakeClock, n: int, amount: str, **fields: Any) -> str:
    item = {"sku": f"SKU-{n}", "name": "猫砂盆", "qty": 2, "unit_price": amount}
    total = f"{2 * float(amount):.2f}"  # fine for these round test amounts
    body = return_body(
        **{
            "event_id": f"evt-{n}",
            "external_id": f"AS-{n}",
            "amount": total,
            "items": [item],
            **fields,
        }
    )
    status, answer = await post_generic(client, body, clock)
    assert status == 202, answer
    case_id: str = answer["case_id"]
    return case_id


async def get(client: Client, path: str, **params: str) -> tuple[int, Any]:
    resp = await client.get(path, params=params, headers=AUTH)
    assert resp.content_type == "application/json", await resp.text()
    return resp.status, await resp.json()


async def seven_cases(client: Client, clock: FakeClock) -> list[str]:
    """Seven cases, newest last; #3 and #4 share one creation instant (tie on time)."""
    amounts = ["14.95", "66.00", "1440.00", "14.95", "66.00", "3000.00", "66.00"]
    ids = []
    for n, amount in enumerate(amounts):
        if n != 4:
            clock.advance(60)
        ids.append(await new_case(client, clock, n, amount))
    return ids


async def test_the_api_needs_the_bearer_token(client: Client, clock: FakeClock) -> None:
    case_id = await new_case(client, clock, 1, "66.00")
    for path in ("/api/cases", f"/api/cases/{case_id}"):
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": TOKEN}):
            resp = await client.get(path, headers=headers)
            assert resp.status == 401, (path, headers)
            assert "error" in await resp.json()
        resp = await client.get(path, headers=AUTH)
        assert resp.status == 200


async def test_demo_mode_on_loopback_needs_no_token(
    db: Database, tmp_path: Path, clock: FakeClock, aiohttp_client: MakeClient
) -> None:
    settings = make_settings(tmp_path, db.url, demo=True)
    client = await aiohttp_client(create_app(settings, clock=clock, background=False))
    assert (await client.get("/api/cases")).status == 200


async def test_list_pages_newest_first_without_overlap(client: Client, clock: FakeClock) -> None:
    ids = await seven_cases(client, clock)
    seen: list[dict[str, Any]] = []
    cursor: str | None = None
    sizes = []
    while True:
        params = {"limit": "3", **({"cursor": cursor} if cursor else {})}
        status, page = await get(client, "/api/cases", **params)
        assert status == 200
        sizes.append(len(page["cases"]))
        seen += page["cases"]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert sizes == [3, 3, 1]
    _, first = await get(client, "/api/cases", limit="3")
    token = first["next_cursor"]
    tampered = token[:-1] + ("A" if token[-1] != "A" else "B")
    status, body = await get(client, "/api/cases", limit="3", cursor=tampered)
    assert status == 400 and "cursor" in body["error"]
    assert len({c["id"] for c in seen}) == 7 and {c["id"] for c in seen} == set(ids)
    order = [(c["created_at"], c["id"]) for c in seen]
    assert order == sorted(order, reverse=True)
    assert seen[0]["amount"] == "132.00" and isinstance(seen[0]["amount"], str)


async def test_list_filters(client: Client, clock: FakeClock) -> None:
    ids = await seven_cases(client, clock)
    status, page = await get(client, "/api/cases", status="pending_approval")
    assert status == 200
    pending = {c["id"] for c in page["cases"]}
    assert pending == {ids[1], ids[2], ids[4], ids[5], ids[6]}
    assert {c["status"] for c in page["cases"]} == {"pending_approval"}

    _, page = await get(client, "/api/cases", status="refund_pending,pending_approval")
    assert len(page["cases"]) == 7
    assert len((await get(client, "/api/cases", channel="generic"))[1]["cases"]) == 7
    assert (await get(client, "/api/cases", channel="taobao"))[1]["cases"] == []

    # since = the fourth case's creation, written in Shanghai time
    fourth = datetime.fromisoformat(page["cases"][3]["created_at"])
    _, page = await get(client, "/api/cases", since=fourth.isoformat())
    assert {c["id"] for c in page["cases"]} == set(ids[3:])
    unescaped = f"/api/cases?since={fourth.isoformat()}"  # "+08:00" arrives as " 08:00"
    resp = await client.get(unescaped, headers=AUTH)
    assert {c["id"] for c in (await resp.json())["cases"]} == set(ids[3:])
    later = (fourth + timedelta(days=1)).isoformat()
    assert (await get(client, "/api/cases", since=later))[1]["cases"] == []


async def test_several_statuses_page_as_one_list(client: Client, clock: FakeClock) -> None:
    """Each status is its own indexed query, merged: the pages still run newest first,
    through the creation-time tie, without a repeat or a gap, filters and all."""
    ids = await seven_cases(client, clock)
    seen: list[dict[str, Any]] = []
    cursor: str | None = None
    while True:
        params = {"status": "refund_pending,pending_approval", "channel": "generic"}
        params |= {"limit": "2", **({"cursor": cursor} if cursor else {})}
        status, page = await get(client, "/api/cases", **params)
        assert status == 200 and len(page["cases"]) <= 2
        seen += page["cases"]
        if (cursor := page["next_cursor"]) is None:
            break
    assert len(seen) == 7 and {c["id"] for c in seen} == set(ids)
    order = [(c["created_at"], c["id"]) for c in seen]
    assert order == sorted(order, reverse=True)
    assert {c["status"] for c in seen} == {"refund_pending", "pending_approval"}


async def test_reads_answer_while_the_writer_is_held(client: Client, clock: FakeClock) -> None:
    """Health, metrics and the API read through their own pool: with the SQLite writer
    lock held, or every PostgreSQL writer connection in an open write transaction (one
    of them changing every case), they answer from the last commit."""
    ids = await seven_cases(client, clock)
    async with writer_held(client.app[CTX].db):
        for path in ("/healthz", "/metrics", "/api/cases?status=pending_approval"):
            resp = await asyncio.wait_for(client.get(path, headers=AUTH), HANG)
            assert resp.status == 200, path
        status, detail = await asyncio.wait_for(get(client, f"/api/cases/{ids[1]}"), HANG)
        assert (status, detail["status"]) == (200, "pending_approval")  # not the held write
        status, page = await get(client, "/api/cases", status="approved")
        assert (status, page["cases"]) == (200, [])


@pytest.mark.parametrize(
    ("param", "value", "word"),
    [
        ("status", "bogus", "status"),
        ("limit", "0", "limit"),
        ("limit", "201", "limit"),
        ("limit", "ten", "limit"),
        ("cursor", "not-a-cursor", "cursor"),
        ("cursor", "WzEsMl0", "cursor"),  # base64 of [1,2]: well-formed, wrong contents
        ("since", "yesterday", "since"),
        ("since", "2026-11-23T10:00:00", "offset"),
        ("since", "0001-01-01T00:00:00+08:00", "since"),  # no UTC date for it
        ("since", "9999-12-31T23:59:59-08:00", "since"),
        ("cursor", FORGED_CURSOR, "cursor"),  # the right shape, but not one we issued
        ("channel", "Bad Channel!", "channel"),
    ],
)
async def test_bad_filters_answer_400(client: Client, param: str, value: str, word: str) -> None:
    status, body = await get(client, "/api/cases", **{param: value})
    assert status == 400 and word in body["error"]


async def test_case_detail_follows_the_contract(client: Client, clock: FakeClock) -> None:
    evidence = ["https://img.example.com/a.jpg"]
    case_id = await new_case(
        client, clock, 1, "66.00", evidence=evidence, buyer={"ref": "b-1", "nick": "喵星人"}
    )
    status, case = await get(client, f"/api/cases/{case_id}")
    assert status == 200
    assert set(case) >= CONTRACT_KEYS
    assert (case["id"], case["status"], case["tier"]) == (case_id, "pending_approval", "cs_lead")
    assert (case["amount"], case["refund_amount"], case["deduction"]) == ("132.00", None, "0.00")
    assert case["buyer"] == {"ref": "b-1", "nick": "喵星人"}
    assert case["items"] == [{"sku": "SKU-1", "name": "猫砂盆", "qty": 2, "unit_price": "66.00"}]
    [step] = case["steps"]
    assert {k: step[k] for k in ("seq", "role", "state", "actor", "assignee", "at")} == {
        "seq": 1,
        "role": "cs_lead",
        "state": "pending",
        "actor": None,
        "assignee": None,
        "at": None,
    }
    assert step["due_at"].endswith("+08:00")
    assert case["evidence"] == [
        {"kind": "url", "ref": evidence[0], "added_by": "generic", "at": case["created_at"]}
    ]
    assert [(e["action"], e["from"], e["to"]) for e in case["events"]] == [
        ("created", None, "requested"),
        ("route", "requested", "pending_approval"),
    ]
    assert case["events"][0]["actor"] == "channel"
    assert case["events"][1]["detail"]["why"] == "档位「客服组长审批」：cs_lead"
    assert case["created_at"] == "2026-11-23T10:00:00+08:00"


async def test_refund_waits_for_the_oms_when_nobody_could_be_asked(
    client: Client, clock: FakeClock
) -> None:
    """No callback_url: the refund is released but nobody confirmed it; the OMS reads the
    API, refunds, and reports `refunded` through the webhook."""
    case_id = await new_case(client, clock, 2, "14.95")
    await client.app[WORKER].drain()
    _, case = await get(client, f"/api/cases/{case_id}")
    assert (case["status"], case["refund_amount"]) == ("refund_pending", "29.90")
    assert case["refunded_at"] is None
    done = return_body(
        event_id="evt-2-done",
        external_id="AS-2",
        amount="29.90",
        items=[{"sku": "SKU-2", "name": "猫砂盆", "qty": 2, "unit_price": "14.95"}],
        status="refunded",
        version="2",
    )
    status, answer = await post_generic(client, done, clock)
    assert (status, answer["case_id"]) == (202, case_id)
    _, case = await get(client, f"/api/cases/{case_id}")
    assert case["status"] == "refunded" and case["refunded_at"] is not None


async def test_unknown_case_is_404_json(client: Client) -> None:
    status, body = await get(client, "/api/cases/RC-000000-0000")
    assert status == 404 and "RC-000000-0000" in body["error"]


async def test_healthz(client: Client) -> None:
    resp = await client.get("/healthz")
    assert (resp.status, await resp.json()) == (200, {"status": "ok", "db": "ok"})


async def test_healthz_is_503_when_the_database_is_unreachable(
    db: Database, tmp_path: Path, clock: FakeClock, aiohttp_client: MakeClient
) -> None:
    settings = make_settings(tmp_path, "postgresql+asyncpg://postgres@127.0.0.1:1/x")
    app = create_app(settings, clock=clock, background=False, migrate=False)
    app.cleanup_ctx.clear()  # start-up itself needs the database (members sync)
    client = await aiohttp_client(app)
    resp = await client.get("/healthz")
    assert (resp.status, await resp.json()) == (503, {"status": "degraded", "db": "unreachable"})


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    found = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            found[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return found


async def test_metrics_expose_cases_outbox_and_requests(client: Client, clock: FakeClock) -> None:
    await seven_cases(client, clock)
    await client.get("/no/such/page/42")
    await get(client, "/api/cases/RC-000000-0001")
    resp = await client.get("/metrics")
    assert resp.status == 200
    assert resp.headers["Content-Type"].startswith("text/plain")
    found = samples(await resp.text())
    assert found[("returnhub_cases", (("status", "pending_approval"),))] == 5
    assert found[("returnhub_cases", (("status", "refund_pending"),))] == 2
    assert found[("returnhub_outbox_depth", (("status", "pending"),))] > 0
    assert found[("returnhub_outbox_depth", (("status", "dead"),))] == 0

    def requests(method: str, route: str, status: str) -> float:
        key = (("method", method), ("route", route), ("status", status))
        return found.get(("returnhub_http_requests_total", key), 0)

    assert requests("POST", "/webhooks/generic", "202") == 7
    assert requests("GET", "/api/cases/{id}", "404") == 1
    assert requests("GET", "unmatched", "404") == 1
    assert not any("/no/such" in str(labels) for _, labels in found)
