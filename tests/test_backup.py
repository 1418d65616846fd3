"""`returnhub backup PATH` on a live SQLite database, and what it says on PostgreSQL.

A real `returnhub serve` takes signed webhooks from a sender thread the whole time;
the backup runs in the middle. The copy passes `integrity_check`, opens through the
migrations like any database, and holds every case acknowledged before the backup
started (those rows were still in the WAL) and none that was never acknowledged;
the server went on committing while it ran.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy import select

from storage.db import Database
from storage.migrate import upgrade
from storage.models import Case
from tests.conftest import pg_or_skip
from tests.support import GENERIC_SECRET, make_settings, return_body, sign_generic
from tests.test_restart_tokens import Server
from tests.test_serve import free_port

CLI = "import sys, bot.cli; sys.exit(bot.cli.main())"


def backup(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(  # noqa: S603 - our own CLI
        [sys.executable, "-c", CLI, "backup", "--config", str(config), *args],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip


class Sender(threading.Thread):
    """Posts distinct signed return requests until stopped; the acknowledged ids in order."""

    def __init__(self, url: str) -> None:
        super().__init__(daemon=True)
        self.url, self.stop, self.acked, self.sent = url, threading.Event(), list[str](), 0

    def run(self) -> None:
        while not self.stop.is_set():
            external = f"BK-{self.sent:05d}"
            self.sent += 1
            raw = json.dumps(
                return_body(event_id=f"bk-evt-{external}", external_id=external),
                ensure_ascii=False,
            ).encode()
            headers = sign_generic(GENERIC_SECRET, raw, int(time.time()))
            request = urllib.request.Request(self.url, data=raw, headers=headers)  # noqa: S310
            try:
                with urllib.request.urlopen(request, timeout=10) as resp:  # noqa: S310
                    if resp.status == 202:
                        self.acked.append(external)
            except (OSError, urllib.error.URLError):
                time.sleep(0.05)


async def externals(url: str) -> set[str]:
    db = Database(url)
    try:
        await upgrade(db)  # a copy opens like any database: already at head, nothing to do
        async with db.read() as session:
            return set(await session.scalars(select(Case.external_id)))
    finally:
        await db.dispose()


def wait_for(check: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + 60
    while not check():
        assert time.monotonic() < deadline, f"gave up waiting for {what}"
        time.sleep(0.05)


def test_a_backup_of_the_live_database_holds_every_acknowledged_row(tmp_path: Path) -> None:
    live = tmp_path / "returnhub.db"
    make_settings(tmp_path, f"sqlite+aiosqlite:///{live}")
    config = tmp_path / "returnhub.toml"
    server = Server(tmp_path, free_port())
    server.start()
    sender = Sender(server.url("/webhooks/generic"))
    try:
        sender.start()
        wait_for(lambda: len(sender.acked) >= 20, "the first acknowledgements")
        before = list(sender.acked)
        done = backup(config, str(tmp_path / "copy.db"))
        during = len(sender.acked) - len(before)
        wait_for(lambda: len(sender.acked) >= len(before) + during + 5, "writes after it")
        sender.stop.set()
        sender.join(timeout=30)
        assert server.stop(signal.SIGTERM) == 0
    finally:
        sender.stop.set()
        if server.proc is not None and server.proc.poll() is None:
            server.stop(signal.SIGKILL)
    assert done.returncode == 0, done.stderr
    assert during > 0, "the server committed nothing while the backup ran"
    assert "integrity_check ok" in done.stdout
    assert not (tmp_path / "copy.db.part").exists()
    # Restore as an operator does: the copy becomes the database file of a new place.
    restored = tmp_path / "restored" / "returnhub.db"
    restored.parent.mkdir()
    shutil.copyfile(tmp_path / "copy.db", restored)
    found = asyncio.run(externals(f"sqlite+aiosqlite:///{restored}"))
    assert set(before) <= found, "a case acknowledged before the backup is missing"
    assert found <= set(sender.acked), "the copy holds a case nobody acknowledged"
    assert len(found) < len(sender.acked), "the server committed nothing after the copy"
    assert asyncio.run(externals(f"sqlite+aiosqlite:///{live}")) == set(sender.acked)


def test_backup_refuses_to_overwrite_and_points_postgresql_at_pg_dump(tmp_path: Path) -> None:
    make_settings(tmp_path, f"sqlite+aiosqlite:///{tmp_path}/missing.db")
    config = tmp_path / "returnhub.toml"
    missing = backup(config, str(tmp_path / "copy.db"))
    assert missing.returncode == 2 and "no database file" in missing.stderr
    (tmp_path / "copy.db").write_bytes(b"keep me")
    (tmp_path / "missing.db").write_bytes(b"")
    exists = backup(config, str(tmp_path / "copy.db"))
    assert exists.returncode == 2 and "--force" in exists.stderr
    assert (tmp_path / "copy.db").read_bytes() == b"keep me"


@pytest.mark.pg
def test_backup_on_postgresql_says_to_use_pg_dump(tmp_path: Path) -> None:
    make_settings(tmp_path, pg_or_skip())
    done = backup(tmp_path / "returnhub.toml", str(tmp_path / "copy.db"))
    assert done.returncode == 2 and "pg_dump" in done.stderr
    assert not (tmp_path / "copy.db").exists()
