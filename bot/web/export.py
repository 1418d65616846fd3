"""Case export for finance reconciliation: `GET /api/export/cases` as CSV or Excel (Bearer).

`?format=csv|xlsx&from=&to=&channel=&shop=&status=`: the cases created in
[from, to) — a date (`2026-11-01`, the operators' zone, whole days) or an ISO 8601
time with offset; by default the last 30 days — oldest first, with the amounts
requested, deducted and refunded (yuan) and each stage's time in the operators'
zone. Rows are streamed from a server-side cursor (`yield_per`) through the read
pool, so 100k cases never sit in memory: CSV goes to the client chunk by chunk
(UTF-8 with a BOM, so Excel opens the Chinese headers right); an .xlsx is written
row by row in xlsxwriter's constant-memory mode to a temporary file, then sent.
Bad parameters answer 400 naming them, as the rest of the API does.
"""

from __future__ import annotations

import asyncio
import csv
import io
import os
import re
import tempfile
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import xlsxwriter
from aiohttp import web
from multidict import MultiMapping
from sqlalchemy import Select, select
from sqlalchemy.ext.asyncio import AsyncSession

from bot.appkeys import CTX
from bot.money import yuan
from bot.web.api import STATUSES, BadQuery
from bot.web.auth import require_api
from storage.models import Case

ROUTE = "/api/export/cases"
CHUNK = 500
DEFAULT_DAYS = 30
MAX_DAYS = 400
_NAME = re.compile(r"[A-Za-z0-9_.-]{1,64}")
_SPACED_OFFSET = re.compile(r" (\d\d:?\d\d)$")  # "+08:00" arrives as " 08:00" when unescaped
MONEY = ("申请金额", "扣款", "退款金额")
TIMES = ("创建时间", "审批时间", "签收时间", "退款时间", "关闭时间")
HEADER = (
    *("售后单号", "渠道", "店铺", "渠道售后单号", "订单号", "类型", "状态", "档位"),
    *("原因代码", "原因", "买家", *MONEY, *TIMES),
)
COLUMNS = (
    *(Case.id, Case.channel, Case.shop, Case.external_id, Case.order_id, Case.kind),
    *(Case.status, Case.tier, Case.reason_code, Case.reason_text, Case.buyer_ref),
    *(Case.amount_fen, Case.deduction_fen, Case.refund_fen),
    *(Case.created_at, Case.decided_at, Case.received_at, Case.refunded_at, Case.closed_at),
)


@dataclass(frozen=True, slots=True)
class Query:
    start: datetime  # naive UTC, inclusive
    end: datetime  # naive UTC, exclusive
    channel: str | None
    shop: str | None
    statuses: frozenset[str]
    xlsx: bool


def setup(app: web.Application) -> None:
    app.router.add_get(ROUTE, export_cases)


def _moment(value: str, name: str, zone: ZoneInfo, *, end: bool) -> datetime:
    """A date (the start of that local day; for `to`, of the next) or an ISO time."""
    try:
        day = date.fromisoformat(value)
    except ValueError:
        pass
    else:
        try:  # 0001-01-01 in Shanghai has no UTC date; 9999-12-31 has no next day
            local = datetime.combine(day + timedelta(days=1 if end else 0), time(), zone)
            return local.astimezone(UTC).replace(tzinfo=None)
        except OverflowError:
            raise BadQuery(f"{name} is out of range") from None
    try:
        moment = datetime.fromisoformat(_SPACED_OFFSET.sub(r"+\1", value))
    except ValueError:
        raise BadQuery(f"{name} must be a date (2026-11-01) or an ISO 8601 time") from None
    if moment.tzinfo is None:
        raise BadQuery(f"{name} must carry a UTC offset, e.g. 2026-11-21T10:00:00+08:00")
    try:
        return moment.astimezone(UTC).replace(tzinfo=None)
    except OverflowError:
        raise BadQuery(f"{name} is out of range") from None


def parse_query(query: MultiMapping[str], now: datetime, zone: ZoneInfo) -> Query:
    fmt = query.get("format", "csv").strip().lower()
    if fmt not in ("csv", "xlsx"):
        raise BadQuery("format must be csv or xlsx")
    raw_to, raw_from = query.get("to", "").strip(), query.get("from", "").strip()
    end = _moment(raw_to, "to", zone, end=True) if raw_to else now + timedelta(seconds=1)
    start = (
        _moment(raw_from, "from", zone, end=False)
        if raw_from
        else end - timedelta(days=DEFAULT_DAYS)
    )
    if start >= end:
        raise BadQuery("from must be before to")
    if end - start > timedelta(days=MAX_DAYS):
        raise BadQuery(f"the period may span at most {MAX_DAYS} days")
    names = {}
    for name in ("channel", "shop"):
        value = query.get(name, "").strip() or None
        if value is not None and not _NAME.fullmatch(value):
            raise BadQuery(f"{name} must be letters, digits, _ . - (at most 64)")
        names[name] = value
    statuses = frozenset(s.strip() for s in query.get("status", "").split(",") if s.strip())
    if unknown := sorted(statuses - STATUSES):
        raise BadQuery(f"status {unknown[0]!r} is unknown; one of {', '.join(sorted(STATUSES))}")
    return Query(start, end, names["channel"], names["shop"], statuses, fmt == "xlsx")


def statement(q: Query) -> Select[*tuple[Any, ...]]:
    """Oldest first through `ix_case_created` (or `ix_case_channel_created`)."""
    stmt = select(*COLUMNS).where(Case.created_at >= q.start, Case.created_at < q.end)
    if q.channel:
        stmt = stmt.where(Case.channel == q.channel)
    if q.shop:
        stmt = stmt.where(Case.shop == q.shop)
    if q.statuses:
        stmt = stmt.where(Case.status.in_(sorted(q.statuses)))
    return stmt.order_by(Case.created_at, Case.id).execution_options(yield_per=CHUNK)


def _cells(row: Any, local: Callable[[datetime], datetime]) -> list[Any]:
    """Text for the identity columns, fen (or None) for money, local times as text."""
    times = [local(t).strftime("%Y-%m-%d %H:%M:%S") if t is not None else "" for t in row[14:]]
    return [*row[:14], *times]


async def rows(
    session: AsyncSession, q: Query, local: Callable[[datetime], datetime]
) -> AsyncIterator[list[list[Any]]]:
    """The export's rows, CHUNK at a time, from a server-side cursor."""
    result = await session.stream(statement(q))
    async for part in result.partitions(CHUNK):
        yield [_cells(row, local) for row in part]


def _csv(lines: list[list[Any]]) -> bytes:
    out = io.StringIO()
    csv.writer(out).writerows(lines)
    return out.getvalue().encode("utf-8")


def _csv_money(cells: list[Any]) -> list[Any]:
    return [*cells[:11], *(yuan(v) if v is not None else "" for v in cells[11:14]), *cells[14:]]


def _filename(q: Query, local: Callable[[datetime], datetime]) -> str:
    first, last = local(q.start), local(q.end - timedelta(seconds=1))
    return f"returnhub-cases-{first:%Y%m%d}-{last:%Y%m%d}.{'xlsx' if q.xlsx else 'csv'}"


async def export_cases(request: web.Request) -> web.StreamResponse:
    require_api(request)
    ctx = request.app[CTX]
    try:
        q = parse_query(request.query, ctx.now(), ctx.zone)
    except BadQuery as exc:
        return web.json_response({"error": str(exc)}, status=400)
    kind = (
        "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
        if q.xlsx
        else "text/csv; charset=utf-8"
    )
    response = web.StreamResponse(
        headers={
            "Content-Type": kind,
            "Content-Disposition": f'attachment; filename="{_filename(q, ctx.local)}"',
            "Cache-Control": "no-store",
        }
    )
    if q.xlsx:
        return await _send_xlsx(request, response, q)
    await response.prepare(request)
    await response.write("\ufeff".encode() + _csv([list(HEADER)]))
    async with ctx.db.read() as session:
        async for batch in rows(session, q, ctx.local):
            await response.write(_csv([_csv_money(cells) for cells in batch]))
    await response.write_eof()
    return response


async def _send_xlsx(
    request: web.Request, response: web.StreamResponse, q: Query
) -> web.StreamResponse:
    ctx = request.app[CTX]
    handle, path = tempfile.mkstemp(suffix=".xlsx", prefix="returnhub-export-")
    os.close(handle)
    try:
        book = xlsxwriter.Workbook(path, {"constant_memory": True, "in_memory": False})
        sheet = book.add_worksheet("售后单")
        bold, cents = book.add_format({"bold": True}), book.add_format({"num_format": "0.00"})
        sheet.write_row(0, 0, HEADER, bold)
        line = 1
        async with ctx.db.read() as session:
            async for batch in rows(session, q, ctx.local):
                for cells in batch:
                    sheet.write_row(line, 0, cells[:11])
                    for col, fen in enumerate(cells[11:14], start=11):
                        if fen is not None:
                            sheet.write_number(line, col, fen / 100, cents)
                    sheet.write_row(line, 14, cells[14:])
                    line += 1
        await asyncio.to_thread(book.close)
        await response.prepare(request)
        with open(path, "rb") as sent:  # noqa: ASYNC230 - chunks of a local temp file
            while chunk := sent.read(64 * 1024):
                await response.write(chunk)
        await response.write_eof()
        return response
    finally:
        os.unlink(path)
