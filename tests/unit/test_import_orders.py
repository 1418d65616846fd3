"""`returnhub import-orders`: past orders into the customer history, checked line by line,
idempotent on re-import, nothing written when a line is wrong (the store on both engines)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import func, select

from bot import orders_import
from bot.cli import main
from storage.db import Database
from storage.models import Customer, CustomerOrder
from storage.orders import OrderRow, Outcome, remove, upsert
from tests.unit.test_cli import config

ZONE = ZoneInfo("Asia/Shanghai")


def utc(*parts: int) -> datetime:
    """A stored (naive UTC) time."""
    return datetime(*parts, tzinfo=UTC).replace(tzinfo=None)  # type: ignore[misc]


GOOD = (
    "订单号,买家,金额,下单时间,昵称\n"
    "SO-1,buyer-1,199.00,2026-11-01 10:00:00,喵星人\n"
    "SO-2,buyer-1,￥35,2026/10/02,喵星人\n"
    "\n"
    "SO-3,buyer-2,1288.50,2026-09-03T08:00:00+00:00,\n"
)


async def orders_of(db: Database) -> list[tuple[str, str, int, datetime]]:
    async with db.read() as session:
        rows = await session.execute(
            select(
                Customer.buyer_ref,
                CustomerOrder.order_id,
                CustomerOrder.amount_fen,
                CustomerOrder.ordered_at,
            )
            .join(Customer, Customer.id == CustomerOrder.customer_id)
            .order_by(CustomerOrder.order_id)
        )
        return [(b, o, a, t) for b, o, a, t in rows]


async def test_import_is_idempotent_and_a_correction_replaces(
    db: Database, tmp_path: Path
) -> None:
    path = tmp_path / "orders.csv"
    path.write_text(GOOD, encoding="utf-8")
    run = lambda dry: orders_import.run(  # noqa: E731
        db, path, channel="generic", zone=ZONE, encoding="utf-8-sig", dry_run=dry
    )
    assert await run(True) == Outcome(new=3)
    assert await orders_of(db) == []  # a dry run writes nothing
    assert await run(False) == Outcome(new=3)
    assert await orders_of(db) == [
        ("buyer-1", "SO-1", 19900, utc(2026, 11, 1, 2, 0)),  # local time, stored UTC
        ("buyer-1", "SO-2", 3500, utc(2026, 10, 1, 16, 0)),
        ("buyer-2", "SO-3", 128850, utc(2026, 9, 3, 8, 0)),
    ]
    assert await run(False) == Outcome(same=3)
    path.write_text(GOOD.replace("1288.50", "1188.50"), encoding="utf-8")
    assert await run(True) == Outcome(changed=1, same=2)
    assert await run(False) == Outcome(changed=1, same=2)
    assert (await orders_of(db))[2][2] == 118850
    async with db.read() as session:
        nicks = dict(
            (r, n) for r, n in await session.execute(select(Customer.buyer_ref, Customer.nick))
        )
    assert nicks == {"buyer-1": "喵星人", "buyer-2": ""}


async def test_store_last_wins_in_a_batch_and_cancelled_orders_leave(db: Database) -> None:
    at = utc(2026, 11, 1)
    rows = [
        OrderRow("generic", "b", "SO-1", 100, at),
        OrderRow("generic", "b", "SO-1", 200, at),
        OrderRow("generic", "b", "SO-2", 300, at),
    ]
    async with db.transaction() as session:
        assert await upsert(session, db, rows) == Outcome(new=2)
    async with db.transaction() as session:
        assert (
            await remove(session, db, [(("generic", "b"), "SO-1"), (("generic", "x"), "SO-9")])
            == 1
        )
    assert [(o, a) for _, o, a, _ in await orders_of(db)] == [("SO-2", 300)]


def test_a_bad_file_names_each_line_and_writes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = config(tmp_path)
    assert main(["db", "upgrade", "--config", str(path)]) == 0
    csv = tmp_path / "bad.csv"
    csv.write_text(
        "order_id,buyer_ref,amount,ordered_at\n"
        "SO-1,buyer-1,199.00,2026-11-01\n"
        "SO-2,buyer-1,19.9.9,2026-11-01\n"
        "SO-3,,5.00,2026-11-01\n"
        "SO-4,buyer-2,5.00,昨天\n"
        "SO-5,buyer-2,5.00,2026-02-30\n",
        encoding="utf-8",
    )
    capsys.readouterr()
    assert main(["import-orders", str(csv), "--config", str(path)]) == 2
    err = capsys.readouterr().err
    assert f"{csv}:3: 金额 '19.9.9'" in err
    assert f"{csv}:4: 买家（buyer_ref）为空" in err
    assert f"{csv}:5: 下单时间 '昨天' 无法识别" in err
    assert f"{csv}:6: 下单时间 '2026-02-30' 不是有效时间" in err
    assert "未导入任何订单" in err
    url = f"sqlite+aiosqlite:///{tmp_path}/cli.db"

    async def count() -> int:
        db = Database(url)
        async with db.read() as session:
            n = await session.scalar(select(func.count()).select_from(CustomerOrder))
        await db.dispose()
        return int(n or 0)

    assert asyncio.run(count()) == 0


def test_cli_imports_reports_and_explains_encoding_and_headers(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = config(tmp_path)
    assert main(["db", "upgrade", "--config", str(path)]) == 0
    csv = tmp_path / "orders.csv"
    csv.write_bytes(GOOD.encode("gbk"))
    capsys.readouterr()
    assert main(["import-orders", str(csv), "--config", str(path)]) == 2
    assert "--encoding gbk" in capsys.readouterr().err
    args = ["import-orders", str(csv), "--config", str(path), "--encoding", "gbk"]
    assert main([*args, "--dry-run"]) == 0
    out = capsys.readouterr()
    assert "将新增 3 笔" in out.out and "试运行" in out.out
    assert "3/3 行" in out.err  # the progress bar
    assert main(args) == 0
    assert "新增 3 笔，更新 0 笔，未变 0 笔" in capsys.readouterr().out
    assert main(args) == 0
    assert "新增 0 笔，更新 0 笔，未变 3 笔" in capsys.readouterr().out
    (tmp_path / "nohead.csv").write_text("order_id,amount\nSO-1,1.00\n", encoding="utf-8")
    assert main(["import-orders", str(tmp_path / "nohead.csv"), "--config", str(path)]) == 2
    assert "缺少列 buyer_ref/买家、ordered_at/下单时间" in capsys.readouterr().err
    assert main(["import-orders", str(tmp_path / "missing.csv"), "--config", str(path)]) == 2
    assert "文件不存在" in capsys.readouterr().err
