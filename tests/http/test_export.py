"""GET /api/export/cases on both engines: the finance export as CSV and .xlsx, streamed,
filtered by period, channel, shop and status; bad parameters refused; token required."""

from __future__ import annotations

import csv
import io
import re
import zipfile
from pathlib import Path
from xml.etree import ElementTree

import pytest
from sqlalchemy import update

from bot.app import create_app
from bot.appkeys import CTX
from bot.bench.seed import EPOCH, seed_cases
from storage.db import Database
from storage.models import Case
from tests.http.test_api import AUTH, TOKEN, new_case
from tests.support import Client, FakeClock, MakeClient, make_settings

ROUTE = "/api/export/cases"
NS = {"x": "http://schemas.openxmlformats.org/spreadsheetml/2006/main"}


@pytest.fixture
async def client(
    db: Database, tmp_path: Path, clock: FakeClock, aiohttp_client: MakeClient
) -> Client:
    settings = make_settings(tmp_path, db.url, api_token=TOKEN)
    return await aiohttp_client(create_app(settings, clock=clock, background=False))


async def export(client: Client, **params: str) -> tuple[int, bytes, dict[str, str]]:
    resp = await client.get(ROUTE, params=params, headers=AUTH)
    return resp.status, await resp.read(), dict(resp.headers)


def csv_rows(raw: bytes) -> list[list[str]]:
    assert raw.startswith("\ufeff".encode())  # Excel reads the Chinese headers as UTF-8
    return list(csv.reader(io.StringIO(raw.decode("utf-8-sig"))))


def xlsx_rows(raw: bytes) -> list[list[str]]:
    """The first sheet's cells as text (inline or shared strings, numbers as written)."""
    book = zipfile.ZipFile(io.BytesIO(raw))
    shared: list[str] = []
    if "xl/sharedStrings.xml" in book.namelist():
        root = ElementTree.fromstring(book.read("xl/sharedStrings.xml"))  # noqa: S314 - ours
        shared = ["".join(t.text or "" for t in si.iter(f"{{{NS['x']}}}t")) for si in root]
    sheet = ElementTree.fromstring(book.read("xl/worksheets/sheet1.xml"))  # noqa: S314 - ours
    out = []
    for row in sheet.iterfind(".//x:sheetData/x:row", NS):
        cells: dict[int, str] = {}
        for c in row.iterfind("x:c", NS):
            col = re.match(r"[A-Z]+", c.get("r", "A")).group(0)  # type: ignore[union-attr]
            index = sum((ord(ch) - 64) * 26**i for i, ch in enumerate(reversed(col))) - 1
            kind, value = c.get("t"), c.find("x:v", NS)
            if kind == "s" and value is not None:
                cells[index] = shared[int(value.text or "0")]
            elif kind == "inlineStr":
                cells[index] = "".join(t.text or "" for t in c.iter(f"{{{NS['x']}}}t"))
            else:
                cells[index] = value.text or "" if value is not None else ""
        out.append([cells.get(i, "") for i in range(max(cells) + 1 if cells else 0)])
    return out


async def three_cases(client: Client, clock: FakeClock) -> list[str]:
    ids = [await new_case(client, clock, 1, "14.95")]  # auto-approved, refund pending
    clock.advance(3600)
    ids.append(await new_case(client, clock, 2, "66.00"))  # cs lead
    clock.advance(86_400)
    ids.append(await new_case(client, clock, 3, "1440.00", shop="second-store"))
    async with client.app[CTX].db.transaction() as session:
        await session.execute(
            update(Case).where(Case.id == ids[0]).values(deduction_fen=350, refund_fen=2640)
        )
    return ids


async def test_csv_has_amounts_in_yuan_and_local_stage_times(
    client: Client, clock: FakeClock
) -> None:
    ids = await three_cases(client, clock)
    status, raw, headers = await export(client, **{"from": "2026-11-01", "to": "2026-11-30"})
    assert status == 200, raw
    assert headers["Content-Type"].startswith("text/csv")
    assert 'filename="returnhub-cases-20261101-20261130.csv"' in headers["Content-Disposition"]
    header, *body = csv_rows(raw)
    assert header[:2] == ["售后单号", "渠道"] and header[11:14] == ["申请金额", "扣款", "退款金额"]
    assert [r[0] for r in body] == ids  # oldest first
    first = dict(zip(header, body[0], strict=True))
    assert (first["申请金额"], first["扣款"], first["退款金额"]) == ("29.90", "3.50", "26.40")
    assert first["状态"] == "refund_pending" and first["店铺"] == "main-store"
    assert first["创建时间"] == "2026-11-23 10:00:00"  # the test clock, in Asia/Shanghai
    assert first["审批时间"] == first["创建时间"] and first["签收时间"] == ""
    assert dict(zip(header, body[1], strict=True))["退款金额"] == ""


async def test_filters_by_period_channel_shop_and_status(client: Client, clock: FakeClock) -> None:
    ids = await three_cases(client, clock)
    cases = {
        (("from", "2026-11-24"),): ids[2:],  # a local date: from its midnight
        (("to", "2026-11-23"),): ids[:2],  # to the end of that local day
        (("shop", "second-store"),): ids[2:],
        (("status", "pending_approval"),): ids[1:],
        (("status", "refund_pending,refunded"),): ids[:1],
        (("channel", "taobao"),): [],
        (("from", "2026-11-23T10:30:00+08:00"), ("to", "2026-11-23T12:00:00+08:00")): ids[1:2],
    }
    for params, expected in cases.items():
        query = {"from": "2026-11-01", "to": "2026-11-30", **dict(params)}
        status, raw, _ = await export(client, **query)
        assert status == 200, (params, raw)
        assert [r[0] for r in csv_rows(raw)[1:]] == expected, params


async def test_xlsx_has_the_same_rows_with_numbers(client: Client, clock: FakeClock) -> None:
    ids = await three_cases(client, clock)
    status, raw, headers = await export(client, format="xlsx", **{"from": "2026-11-01"})
    assert status == 200
    assert headers["Content-Type"].endswith("spreadsheetml.sheet")
    header, *body = xlsx_rows(raw)
    assert header[0] == "售后单号" and [r[0] for r in body] == ids
    assert [float(v) for v in body[0][11:14]] == [29.9, 3.5, 26.4]
    assert body[0][14] == "2026-11-23 10:00:00"


async def test_many_cases_stream_in_chunks(client: Client) -> None:
    await seed_cases(client.app[CTX].db, 0, 1234)  # all on EPOCH's day, more than two chunks
    day = EPOCH.date().isoformat()  # UTC midnight: the same date in Shanghai (08:00)
    query = {"from": day, "to": day}
    for fmt, read in (("csv", csv_rows), ("xlsx", xlsx_rows)):
        status, raw, _ = await export(client, format=fmt, **query)
        assert status == 200
        rows = read(raw)[1:]
        assert len(rows) == 1234 and len({r[0] for r in rows}) == 1234, fmt


async def test_bad_parameters_and_no_token_are_refused(client: Client) -> None:
    bad = [
        {"format": "pdf"},
        {"from": "yesterday"},
        {"from": "2026-11-21T10:00:00"},  # no offset
        {"from": "2026-11-30", "to": "2026-11-01"},
        {"from": "2024-01-01", "to": "2026-01-01"},  # over 400 days
        {"status": "lost"},
        {"channel": "../etc"},
    ]
    for params in bad:
        resp = await client.get(ROUTE, params=params, headers=AUTH)
        assert resp.status == 400, params
        assert (await resp.json())["error"]
    for headers in ({}, {"Authorization": "Bearer wrong"}):
        assert (await client.get(ROUTE, headers=headers)).status == 401
