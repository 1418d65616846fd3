"""`returnhub outbox discard`: an admin gives a dead letter up, and what it held goes on."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import select

from bot.cli import main
from storage import outbox
from storage.db import Database
from storage.models import OutboxMessage
from tests.unit.test_cli import config


def test_discard_voids_only_the_dead_rows_named(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = config(tmp_path)
    assert main(["db", "upgrade", "--config", str(path)]) == 0
    url = f"sqlite+aiosqlite:///{tmp_path}/cli.db"

    async def rows(dead: bool) -> list[str]:
        db = Database(url)
        async with db.transaction() as session:
            if dead:  # a dead approved event and the refund it holds
                for n, status in enumerate(("dead", "pending")):
                    row = outbox.enqueue(
                        session,
                        kind="channel.event",
                        destination="channel:generic",
                        payload={"n": n},
                        now=datetime.now(UTC),
                        case_id="RC-261201-0001",
                    )
                    row.status = status
            found = await session.scalars(select(OutboxMessage).order_by(OutboxMessage.id))
            statuses = [r.status for r in found]
        await db.dispose()
        return statuses

    assert asyncio.run(rows(dead=True)) == ["dead", "pending"]
    capsys.readouterr()
    assert main(["outbox", "discard", "--config", str(path), "2"]) == 0  # pending: untouched
    assert "已作废 0 条" in capsys.readouterr().out
    assert main(["outbox", "discard", "--config", str(path), "1"]) == 0
    assert "已作废 1 条" in capsys.readouterr().out
    assert asyncio.run(rows(dead=False)) == ["void", "pending"]
    with pytest.raises(SystemExit):  # ids are required
        main(["outbox", "discard", "--config", str(path)])
