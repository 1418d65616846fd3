"""The `returnhub` command: exit codes and what each subcommand leaves behind."""

from __future__ import annotations

import argparse
import asyncio
import logging
import re
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import select

from bot import cli
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
    out = capsys.readouterr().out
    assert "config ok" in out and f"配置文件 / config file: {good}" in out
    bad = tmp_path / "bad.toml"
    bad.write_text("[server]\nport = 80\nbogus = 1\n", encoding="utf-8")
    assert main(["check-config", "--config", str(bad)]) == 2
    printed = capsys.readouterr()
    assert printed.out == f"{bad}:3: 未知配置项 / unknown key server.bogus\n"
    assert "配置有 1 处错误" in printed.err


def test_check_config_in_an_empty_directory_says_it_read_no_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("RETURNHUB_CONFIG", raising=False)
    assert main(["check-config"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("警告 / warning: 未找到配置文件")
    assert "packaged defaults" in out[0]
    assert any(line.startswith("路由规则 / routing: ") and "内置默认" in line for line in out)
    warned = "\n".join(line for line in out if line.startswith("警告"))
    assert "没有启用任何聊天平台" in warned
    assert "没有启用任何渠道" in warned
    assert "[api] token 为空：读取 API（/api/*）关闭，所有请求回答 401" in warned
    assert out[-1] == "配置无误 / config ok"


FILLED = """
[database]
url = "sqlite+aiosqlite:///{db}"
[console]
enabled = true
[channels.generic]
callback_url = "https://oms.example.com/hook?key=s3cret"
[channels.taobao]
app_key = "12345"
[channels.shopify]
shop_domain = "pets.myshopify.com"
[dingtalk]
app_key = "ding"
app_secret = "x"
robot_code = "r"
[api]
token = "read-token"
[[members]]
name = "王组长"
roles = ["cs_lead"]
"""


def test_check_config_names_live_incomplete_and_ignored_sections(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "returnhub.toml"
    path.write_text(FILLED.format(db=tmp_path / "x.db"), encoding="utf-8")
    assert main(["check-config", "--config", str(path)]) == 0
    out = capsys.readouterr().out
    assert "live platforms: dingtalk（HTTP 模式）, console" in out
    assert "[dingtalk] 不完整，缺少 card_template_id" in out
    assert "[channels.generic] 不完整，缺少 secret" in out and "503" in out
    for section in ("channels.taobao", "channels.shopify"):
        assert f"警告 / warning: [{section}] 已配置但尚未支持，将被忽略" in out
    assert "channels.jd" not in out and "channels.douyin" not in out  # left at defaults
    assert "token 为空" not in out and "未配置成员" not in out
    assert "s3cret" not in out  # the callback URL's query is never printed
    path.write_text(
        FILLED.format(db=tmp_path / "x.db").replace(
            "[channels.generic]", '[channels.generic]\nsecret = "g"'
        ),
        encoding="utf-8",
    )
    assert main(["check-config", "--config", str(path)]) == 0
    out = capsys.readouterr().out
    assert "live channels: generic（结果回调到 oms.example.com）" in out
    assert "[channels.generic] 不完整" not in out


def test_serve_logs_the_same_report_at_start(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "returnhub.toml"
    path.write_text(FILLED.format(db=tmp_path / "x.db"), encoding="utf-8")
    ran: list[tuple[str, int]] = []
    monkeypatch.setattr(cli, "_run", lambda app, host, port: ran.append((host, port)))
    with caplog.at_level(logging.INFO, logger="returnhub"):
        assert main(["serve", "--config", str(path), "--port", "8099"]) == 0
    assert ran == [("127.0.0.1", 8099)]
    logged = {(r.levelno, r.getMessage()) for r in caplog.records if r.name == "returnhub"}
    assert (logging.INFO, f"配置文件 / config file: {path}") in logged
    assert any(
        level == logging.WARNING and text.startswith("[channels.taobao] 已配置但尚未支持")
        for level, text in logged
    )


def _parsers(p: argparse.ArgumentParser) -> list[tuple[str, argparse.ArgumentParser]]:
    found = [(p.prog, p)]
    for action in p._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in action.choices.values():
                found += _parsers(child)
    return found


def test_every_option_of_every_command_is_described_in_chinese() -> None:
    cjk = re.compile(r"[\u4e00-\u9fff]")
    parsers = _parsers(cli.parser())
    assert len(parsers) >= 10  # returnhub, its 6 commands, db upgrade, outbox dead/retry
    for prog, p in parsers:
        for action in p._actions:
            if isinstance(action, argparse._SubParsersAction):  # described per command
                helps = [choice.help or "" for choice in action._choices_actions]
                assert all(cjk.search(text) for text in helps), (prog, helps)
            else:
                assert cjk.search(action.help or ""), (prog, action.option_strings)
        assert "显示本帮助并退出" in p.format_help()


def test_serve_refuses_a_bad_config_with_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[server]\nport = 'x'\n", encoding="utf-8")
    with pytest.raises(SystemExit) as stop:
        main(["serve", "--config", str(bad)])
    assert stop.value.code == 2
    err = capsys.readouterr().err
    assert f"{bad}:2: server.port: 应为整数" in err
    assert "配置有 1 处错误，请修改后重试" in err


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
    assert "数据库已是最新结构 / database is at the latest schema" in capsys.readouterr().out
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
