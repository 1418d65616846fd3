"""`returnhub import-orders FILE.csv`: a shop's past orders into the customer history.

A shop that starts fresh has no order history, so the ops director's card would
read "0 orders" for every buyer and the return rate would never show. An export of
the shop's orders fills it. The file is read twice, streaming: the first pass
checks every line and reports each problem as `FILE:LINE: message` (nothing is
written when there is one); the second stores the orders in batches, each batch
in its own transaction, with a progress bar. Orders are upserted on (buyer,
order_id) (storage/orders.py), so importing the same file again changes nothing
and a corrected line replaces the old values. `--dry-run` stops after the check
and says how many orders are new, changed or already there.

Columns (a header line, English or Chinese names): order_id/订单号, buyer_ref/买家,
amount/金额 (yuan, "199.00"), ordered_at/下单时间 (ISO 8601 with an offset, or
"2026-11-01 10:00[:00]" / "2026/11/01" in the configured zone), and optionally
channel/渠道 (else `--channel`) and buyer_nick/昵称.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import re
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from bot.bench.report import Progress
from bot.money import parse_yuan
from bot.settings import Settings
from storage.db import Database
from storage.orders import OrderRow, Outcome, upsert

BATCH = 1000
MAX_ERRORS = 50  # listed; the rest are counted
COLUMNS = {
    "order_id": ("order_id", "订单号"),
    "buyer_ref": ("buyer_ref", "买家"),
    "amount": ("amount", "金额"),
    "ordered_at": ("ordered_at", "下单时间"),
    "channel": ("channel", "渠道"),
    "buyer_nick": ("buyer_nick", "昵称"),
}
REQUIRED = ("order_id", "buyer_ref", "amount", "ordered_at")
LIMITS = {"order_id": 64, "buyer_ref": 64, "channel": 20, "buyer_nick": 64}
_LOCAL = re.compile(r"(\d{4})[-/](\d{1,2})[-/](\d{1,2})(?:[ T](\d{1,2}):(\d{2})(?::(\d{2}))?)?")


class ImportFailed(Exception):
    """The file cannot be imported: `errors` are `FILE:LINE: message` lines."""

    def __init__(self, errors: list[str]) -> None:
        super().__init__(f"{len(errors)} error(s)")
        self.errors = errors


@dataclass(frozen=True, slots=True)
class Checked:
    rows: int


def _header(path: Path, names: list[str]) -> dict[str, int]:
    where: dict[str, int] = {}
    for index, raw in enumerate(names):
        name = raw.strip().lower()
        for column, aliases in COLUMNS.items():
            if name in aliases:
                if column in where:
                    raise ImportFailed([f"{path}:1: 列 {raw!r} 重复 / duplicate column"])
                where[column] = index
    missing = [c for c in REQUIRED if c not in where]
    if missing:
        wanted = "、".join("/".join(COLUMNS[c]) for c in missing)
        raise ImportFailed([f"{path}:1: 缺少列 {wanted} / missing column(s)"])
    return where


def _time(text: str, zone: ZoneInfo) -> datetime:
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        m = _LOCAL.fullmatch(text)
        if m is None:
            raise ValueError(
                f"下单时间 {text!r} 无法识别，应为 2026-11-01 10:00:00 或带时区的 ISO 8601"
            ) from None
        year, month, day, hour, minute, second = (int(p) if p else 0 for p in m.groups())
        try:
            moment = datetime(year, month, day, hour, minute, second, tzinfo=zone)
        except ValueError as exc:
            raise ValueError(f"下单时间 {text!r} 不是有效时间：{exc}") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=zone)
    return moment.astimezone(UTC).replace(tzinfo=None)


def _row(cells: list[str], where: dict[str, int], channel: str, zone: ZoneInfo) -> OrderRow:
    value = {c: cells[i].strip() if i < len(cells) else "" for c, i in where.items()}
    for column in REQUIRED:
        if not value[column]:
            raise ValueError(f"{COLUMNS[column][1]}（{column}）为空")
    for column, limit in LIMITS.items():
        if len(value.get(column, "")) > limit:
            raise ValueError(f"{COLUMNS[column][1]}（{column}）超过 {limit} 个字符")
    amount = value["amount"].lstrip("¥￥").strip()
    try:
        fen = parse_yuan(amount, allow_zero=True)
    except ValueError:
        raise ValueError(f'金额 {value["amount"]!r} 应为元，如 "199.00"') from None
    return OrderRow(
        channel=value.get("channel") or channel,
        buyer_ref=value["buyer_ref"],
        order_id=value["order_id"],
        amount_fen=fen,
        ordered_at=_time(value["ordered_at"], zone),
        nick=value.get("buyer_nick", ""),
    )


def read(path: Path, channel: str, zone: ZoneInfo, encoding: str) -> Iterator[OrderRow]:
    """The file's orders in order; ImportFailed listing every bad line (up to MAX_ERRORS)."""
    errors: list[str] = []
    bad = 0
    try:
        with path.open(newline="", encoding=encoding) as handle:
            lines = csv.reader(handle)
            where = _header(path, next(lines, []))
            for cells in lines:
                if not any(c.strip() for c in cells):
                    continue
                try:
                    row = _row(cells, where, channel, zone)
                except ValueError as exc:
                    bad += 1
                    if len(errors) < MAX_ERRORS:
                        errors.append(f"{path}:{lines.line_num}: {exc}")
                    continue
                if not errors:
                    yield row
    except UnicodeDecodeError as exc:
        raise ImportFailed(
            [f"{path}: 不是 {encoding} 编码（{exc.reason}）；Excel 导出的文件可试 --encoding gbk"]
        ) from None
    except csv.Error as exc:
        raise ImportFailed([f"{path}:{lines.line_num}: CSV 格式错误：{exc}"]) from None
    if bad > len(errors):
        errors.append(f"{path}: 另有 {bad - len(errors)} 行有错 / more bad lines")
    if errors:
        raise ImportFailed(errors)


def check(path: Path, channel: str, zone: ZoneInfo, encoding: str) -> Checked:
    """First pass: every line valid, or ImportFailed."""
    return Checked(rows=sum(1 for _ in read(path, channel, zone, encoding)))


def _batches(rows: Iterator[OrderRow]) -> Iterator[list[OrderRow]]:
    batch: list[OrderRow] = []
    for row in rows:
        batch.append(row)
        if len(batch) == BATCH:
            yield batch
            batch = []
    if batch:
        yield batch


async def run(
    db: Database, path: Path, *, channel: str, zone: ZoneInfo, encoding: str, dry_run: bool
) -> Outcome:
    """Check the file, then store it (or, in a dry run, count what storing would do)."""
    checked = check(path, channel, zone, encoding)
    progress = Progress(max(1, -(-checked.rows // BATCH)))
    total, done = Outcome(), 0
    for batch in _batches(read(path, channel, zone, encoding)):
        if dry_run:
            async with db.read() as session:
                total += await upsert(session, db, batch, dry_run=True)
        else:
            async with db.transaction() as session:
                total += await upsert(session, db, batch)
        done += len(batch)
        progress.step(f"{done}/{checked.rows} 行")
    return total


def add_parser(
    sub: Any,
    load: Callable[[str | None], Settings],
    config: Callable[[argparse.ArgumentParser], None],
) -> None:
    """`returnhub import-orders FILE.csv [--channel] [--encoding] [--dry-run]`."""
    orders = sub.add_parser(
        "import-orders", help="导入历史订单（客户画像用）/ import past orders for customer history"
    )
    orders.add_argument("file", help="CSV 文件（含表头）/ CSV file with a header line")
    config(orders)
    orders.add_argument(
        "--channel", default="generic", help="CSV 无渠道列时的渠道；默认 generic / channel"
    )
    orders.add_argument(
        "--encoding", default="utf-8-sig", help="文件编码；默认 utf-8-sig，Excel 可用 gbk"
    )
    orders.add_argument(
        "--dry-run", action="store_true", help="只检查并统计，不写入 / check only, write nothing"
    )
    orders.set_defaults(func=lambda args: command(args, load(args.config)))


def command(args: argparse.Namespace, settings: Settings) -> int:
    path = Path(args.file)
    if not path.is_file():
        print(f"{path}: 文件不存在 / no such file", file=sys.stderr)
        return 2

    async def go() -> int:
        db = Database(settings.database.url)
        try:
            done = await run(
                db,
                path,
                channel=args.channel,
                zone=ZoneInfo(settings.server.timezone),
                encoding=args.encoding,
                dry_run=args.dry_run,
            )
        except ImportFailed as err:
            for line in err.errors:
                print(line, file=sys.stderr)
            print("未导入任何订单 / nothing imported", file=sys.stderr)
            return 2
        finally:
            await db.dispose()
        verb = "将新增" if args.dry_run else "新增"
        print(
            f"{verb} {done.new} 笔，更新 {done.changed} 笔，未变 {done.same} 笔"
            f" / new {done.new}, changed {done.changed}, unchanged {done.same}"
            + ("（试运行，未写入 / dry run）" if args.dry_run else "")
        )
        return 0

    return asyncio.run(go())
