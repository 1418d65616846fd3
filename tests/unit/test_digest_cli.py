"""`returnhub digest`: a preview on stdout; `--send-now` queues it for everyone and
takes today's key, so the scheduled run does not send it again."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, time, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select

from bot.cli import main
from bot.digest_cli import platform_names
from handlers.people import sync_members
from storage.db import Database
from storage.models import Case, InboxKey, OutboxMessage
from tests.support import make_settings

ZONE = ZoneInfo("Asia/Shanghai")


def test_preview_then_send_now(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path}/digest.db"
    settings = make_settings(tmp_path, url)
    path = str(tmp_path / "returnhub.toml")
    assert platform_names(settings) == ("console",)
    assert main(["db", "upgrade", "--config", path]) == 0
    today = datetime.now(UTC).astimezone(ZONE).date()
    noon = datetime.combine(today - timedelta(days=1), time(12), ZONE).astimezone(UTC)

    async def seed() -> None:
        db = Database(url)
        async with db.transaction() as session:
            await sync_members(session, settings.members)
            at = noon.replace(tzinfo=None)
            session.add(Case(id="RC-261123-0001", channel="generic", shop="s", external_id="E1",
                             order_id="O1", kind="refund_only", amount_fen=990, status="requested",
                             created_at=at, updated_at=at, version=1,
                             reason_code="size.too_small"))  # fmt: skip
        await db.dispose()

    async def written() -> tuple[list[str], list[str]]:
        db = Database(url)
        async with db.read() as session:
            rows = list(await session.scalars(select(OutboxMessage.destination)))
            keys = list(await session.scalars(select(InboxKey.key)))
        await db.dispose()
        return sorted(rows), keys

    asyncio.run(seed())
    capsys.readouterr()
    assert main(["digest", "--config", path]) == 0
    preview = capsys.readouterr().out
    assert f"## 售后日报 · {today - timedelta(days=1)}" in preview
    assert "**新增售后**：1 单" in preview and "尺寸不符·size.too_small　1 单" in preview
    assert asyncio.run(written()) == ([], [])  # a preview writes nothing
    assert main(["digest", "--send-now", "--config", path]) == 0
    assert "已排队 3 条消息给 3 个接收人" in capsys.readouterr().out
    rows, keys = asyncio.run(written())
    assert rows == ["console:刘组长", "console:李总监", "console:王组长"]
    assert keys == [f"digest:{today.isoformat()}"]
