"""How many server processes `returnhub serve` runs, and what it refuses before starting any.

The processes themselves are exercised end to end in tests/test_workers.py.
"""

from __future__ import annotations

import socket
import sys
from pathlib import Path
from typing import Any

import pytest

from bot import cli, workers
from bot.cli import main
from bot.settings import ConfigError, load

PG = "postgresql+asyncpg://returnhub@db.internal/returnhub"


def write(tmp_path: Path, url: str, extra: str = "") -> Path:
    path = tmp_path / "returnhub.toml"
    path.write_text(f'[server]\n{extra}\n[database]\nurl = "{url}"\n', encoding="utf-8")
    return path


def sqlite(tmp_path: Path) -> str:
    return f"sqlite+aiosqlite:///{tmp_path}/w.db"


@pytest.fixture
def no_fork(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any attempt to start a worker process fails the test."""

    def refuse(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("a worker process was started")

    monkeypatch.setattr(workers.subprocess, "Popen", refuse)


def test_sqlite_runs_one_worker_and_postgresql_one_per_core(tmp_path: Path) -> None:
    assert workers.resolve(load(write(tmp_path, sqlite(tmp_path)), env={}), None) == 1
    assert workers.resolve(load(write(tmp_path, PG), env={}), None) == workers.cores() >= 1


def test_the_flag_wins_over_the_config_and_the_env_over_the_file(tmp_path: Path) -> None:
    path = write(tmp_path, PG, "workers = 3")
    assert workers.resolve(load(path, env={}), None) == 3
    assert workers.resolve(load(path, env={}), 2) == 2
    from_env = load(path, env={"RETURNHUB__SERVER__WORKERS": "5"})
    assert from_env.server.workers == 5 and workers.resolve(from_env, None) == 5


def test_several_workers_on_sqlite_are_a_config_error(tmp_path: Path) -> None:
    path = write(tmp_path, sqlite(tmp_path), "workers = 2")
    with pytest.raises(ConfigError) as err:
        load(path, env={})
    assert err.value.errors[0].startswith(f"{path}:2: server.workers: SQLite 只能由一个进程写入")
    with pytest.raises(ConfigError):
        load(write(tmp_path, PG, "workers = -1"), env={})


def test_serve_refuses_workers_on_sqlite_without_starting_any(
    tmp_path: Path, no_fork: None, capsys: pytest.CaptureFixture[str]
) -> None:
    config = str(write(tmp_path, sqlite(tmp_path)))
    assert main(["serve", "--config", config, "--workers", "2"]) == 2
    err = capsys.readouterr().err
    assert "--workers 2: SQLite 只能由一个进程写入" in err and "one writer" in err
    assert not (tmp_path / "w.db").exists()  # not even migrated


def test_a_config_error_exits_2_before_any_worker_starts(tmp_path: Path, no_fork: None) -> None:
    bad = write(tmp_path, PG, "port = 0")
    with pytest.raises(SystemExit) as exit_:
        main(["serve", "--config", str(bad), "--workers", "2"])
    assert exit_.value.code == 2
    for flag in ("0", "-1", "two"):
        with pytest.raises(SystemExit) as exit_:
            main(["serve", "--config", str(bad), "--workers", flag])
        assert exit_.value.code == 2


def test_one_worker_is_todays_single_process(
    tmp_path: Path, no_fork: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    served: list[tuple[str, int]] = []
    monkeypatch.setattr(cli, "_run", lambda app, host, port: served.append((host, port)))
    monkeypatch.setattr(workers, "serve", lambda *a, **k: pytest.fail("parent started"))
    config = str(write(tmp_path, sqlite(tmp_path)))
    assert main(["serve", "--config", config, "--port", "9123"]) == 0
    pg = str(write(tmp_path, PG))
    assert main(["serve", "--config", pg, "--workers", "1", "--port", "9124"]) == 0
    assert served == [("127.0.0.1", 9123), ("127.0.0.1", 9124)]


def test_the_worker_sockets_share_one_port() -> None:
    sockets = workers.listen("127.0.0.1", 0, 3)
    try:
        ports = {s.getsockname()[1] for s in sockets}
        assert len(ports) == 1 and len(sockets) == 3
        with socket.create_connection(("127.0.0.1", ports.pop()), timeout=5):
            pass  # the kernel queues it on one of the listening sockets
    finally:
        for s in {id(s): s for s in sockets}.values():
            s.close()


class _Exits(workers.Supervisor):
    """Workers that exit at once with `code` instead of serving."""

    def __init__(self, sockets: list[socket.socket], code: int) -> None:
        super().__init__(sockets, None)
        self.exit_code = code
        self.starts = 0

    def command(self, slot: workers.Slot) -> list[str]:
        self.starts += 1
        return [sys.executable, "-c", f"raise SystemExit({self.exit_code})"]


def test_a_worker_config_error_stops_the_server_with_2_and_no_restart() -> None:
    sockets = workers.listen("127.0.0.1", 0, 2)
    supervisor = _Exits(sockets, 2)
    assert supervisor.run() == 2
    assert supervisor.starts == 2  # each slot once: a config error is not retried


def test_a_crash_loop_gives_up_with_1(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(workers, "FIRST_DELAY", 0.01)
    sockets = workers.listen("127.0.0.1", 0, 1)
    supervisor = _Exits(sockets, 3)
    assert supervisor.run() == 1
    assert supervisor.starts == workers.MAX_QUICK_FAILURES
