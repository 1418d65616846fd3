"""The `returnhub` command: exit codes and what each subcommand leaves behind."""

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


def config(tmp_path: Path) -> Path:
    path = tmp_path / "returnhub.toml"
    path.write_text(
        f'[database]\nurl = "sqlite+aiosqlite:///{tmp_path}/cli.db"\n', encoding="utf-8"
    )
    return path


def test_check_config_ok_and_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    good = config(tmp_path)
    assert main(["check-config", "--config", str(good)]) == 0
    assert "config ok" in capsys.readouterr().out
    bad = tmp_path / "bad.toml"
    bad.write_text("[server]\nport = 80\nbogus = 1\n", encoding="utf-8")
    assert main(["check-config", "--config", str(bad)]) == 2
    assert f"{bad}:3: " in capsys.readouterr().out


def test_serve_refuses_a_bad_config_with_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[server]\nport = 'x'\n", encoding="utf-8")
    with pytest.raises(SystemExit) as stop:
        main(["serve", "--config", str(bad)])
    assert stop.value.code == 2
    assert f"{bad}:2: " in capsys.readouterr().err


def test_init_writes_an_editable_set_and_keeps_existing_files(tmp_path: Path) -> None:
    target = tmp_path / "conf"
    assert main(["init", str(target)]) == 0
    assert {p.name for p in target.iterdir()} == {
        "returnhub.toml",
        "routing.toml",
        "sla.toml",
        "scripts",
    }
    (target / "routing.toml").write_text("# mine\n", encoding="utf-8")
    assert main(["init", str(target)]) == 0
    assert (target / "routing.toml").read_text(encoding="utf-8") == "# mine\n"


def test_db_upgrade_then_dead_letters_listed_and_retried(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = config(tmp_path)
    assert main(["db", "upgrade", "--config", str(path)]) == 0
    assert "latest schema" in capsys.readouterr().out
    url = f"sqlite+aiosqlite:///{tmp_path}/cli.db"

    async def add_dead() -> None:
        db = Database(url)
        async with db.transaction() as session:
            for n in range(2):
                row = outbox.enqueue(
                    session,
                    kind="text.send",
                    destination=f"console:u{n}",
                    payload={},
                    now=datetime.now(UTC),
                )
                row.status, row.attempts, row.last_error = "dead", 8, "HTTP 503"
        await db.dispose()

    async def statuses() -> list[tuple[str, int]]:
        db = Database(url)
        async with db.read() as session:
            rows = await session.scalars(select(OutboxMessage).order_by(OutboxMessage.id))
            result = [(r.status, r.attempts) for r in rows]
        await db.dispose()
        return result

    asyncio.run(add_dead())
    assert main(["outbox", "dead", "--config", str(path)]) == 0
    listed = capsys.readouterr().out.splitlines()
    assert [line.split("\t")[0] for line in listed] == ["2", "1"]
    assert main(["outbox", "retry", "--config", str(path)]) == 2
    assert main(["outbox", "retry", "--config", str(path), "1"]) == 0
    assert asyncio.run(statuses()) == [("pending", 0), ("dead", 8)]
    assert main(["outbox", "retry", "--all", "--config", str(path)]) == 0
    assert asyncio.run(statuses()) == [("pending", 0), ("pending", 0)]
