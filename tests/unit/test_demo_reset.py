"""`returnhub demo --reset` starts the demo data over and keeps its config and secrets."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from bot import cli
from bot.demo import demo_settings, reset


def test_reset_drops_the_database_and_photos_but_keeps_the_secrets(tmp_path: Path) -> None:
    var = tmp_path / "var"
    before = demo_settings(8080, var)
    for name in ("returnhub.db", "returnhub.db-wal", "returnhub.db-shm"):
        (var / name).write_bytes(b"x")
    (var / "evidence" / "RC-1").mkdir(parents=True)
    (var / "evidence" / "RC-1" / "a.jpg").write_bytes(b"jpeg")
    gone = reset(var)
    assert sorted(p.name for p in gone) == [
        "evidence",
        "returnhub.db",
        "returnhub.db-shm",
        "returnhub.db-wal",
    ]
    assert sorted(p.name for p in var.iterdir()) == ["returnhub.toml"]
    after = demo_settings(8080, var)
    assert after.server.secret == before.server.secret and after.api.token == before.api.token
    assert reset(var) == []  # nothing left to drop: a no-op


def test_the_demo_command_resets_before_it_starts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    var = tmp_path / "var"
    demo_settings(8080, var)
    (var / "returnhub.db").write_bytes(b"old")
    started = []
    monkeypatch.setattr(cli, "_run", lambda app, host, port: started.append((host, port)))
    with caplog.at_level(logging.INFO, logger="returnhub"):
        assert cli.main(["demo", "--var", str(var), "--port", "9123", "--reset"]) == 0
    assert started == [("127.0.0.1", 9123)]
    assert not (var / "returnhub.db").exists()
    assert "演示重置" in caplog.text
