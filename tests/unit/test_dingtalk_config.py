"""check-config names a missing or malformed [dingtalk] key (file:line), and the
startup report says whether DingTalk is live, in which mode, and what it lacks."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.cli import main
from bot.settings_load import check, load
from bot.startup_report import render

BASE = """
[database]
url = "sqlite+aiosqlite:///{db}"
[server]
public_url = "https://bot.example.com"
[[members]]
name = "王组长"
roles = ["cs_lead"]
dingtalk_staff_id = "manager1001"
"""
GOOD = """
[dingtalk]
app_key = "dingabc123"
app_secret = "s3cret-app"
robot_code = "dingabc123"
card_template_id = "2f1d3c4b-0000-4a5b.schema"
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "returnhub.toml"
    path.write_text(BASE.format(db=tmp_path / "x.db") + text, encoding="utf-8")
    return path


def test_a_complete_dingtalk_section_is_live_in_http_mode(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD)
    assert check(path, env={}) == []
    report = render(load(path, env={}))
    assert any("live platforms: dingtalk（HTTP 模式）" in line for line in report)
    assert not any("[dingtalk]" in line for line in report)
    stream = write(tmp_path, GOOD + 'mode = "stream"\n')
    assert any("dingtalk（Stream 模式）" in line for line in render(load(stream, env={})))


def test_a_missing_key_is_named_with_its_line(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD.replace('robot_code = "dingabc123"\n', ""))
    (error,) = check(path, env={})
    assert error.startswith(f"{path}:") and "dingtalk.robot_code: 缺少此项" in error
    assert "RETURNHUB__DINGTALK__ROBOT_CODE" in error


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ('card_template_id = "not-a-template"', "dingtalk.card_template_id"),
        ('app_key = "ding key!"', "dingtalk.app_key"),
        ('callback_route_key = "a b"', "dingtalk.callback_route_key"),
        ('api_base = "api.dingtalk.com"', "dingtalk.api_base"),
        ("replay_window_seconds = 0", "dingtalk.replay_window_seconds"),
        ('mode = "websocket"', "dingtalk.mode"),
    ],
)
def test_a_malformed_key_is_named(tmp_path: Path, line: str, expected: str) -> None:
    key = line.split(" = ")[0]
    text = "\n".join(x for x in GOOD.splitlines() if not x.startswith(key + " ")) + "\n" + line
    errors = check(write(tmp_path, text + "\n"), env={})
    assert len(errors) == 1 and f"{expected}: " in errors[0], errors


def test_robot_secrets_and_member_platforms_are_checked(tmp_path: Path) -> None:
    text = GOOD + '[dingtalk.robots]\nops = "tok"\n[dingtalk.robot_secrets]\nops = "nope"\n'
    (error,) = check(write(tmp_path, text), env={})
    assert "dingtalk.robot_secrets" in error and "SEC" in error
    member = '[[members]]\nname = "小周"\nroles = ["warehouse"]\nplatforms = ["dingtalk"]\n'
    (error,) = check(write(tmp_path, GOOD + member), env={})
    assert "platforms" in error and "'dingtalk'" in error


def test_an_incomplete_dingtalk_section_is_reported(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(tmp_path, '[dingtalk]\nmode = "stream"\n')
    assert main(["check-config", "--config", str(path)]) == 0
    out = capsys.readouterr().out
    assert "警告 / warning: [dingtalk] 不完整，缺少 app_key 或 app_secret" in out
    path = write(tmp_path, GOOD.replace('card_template_id = "2f1d3c4b-0000-4a5b.schema"\n', ""))
    assert main(["check-config", "--config", str(path)]) == 0
    assert "[dingtalk] 不完整，缺少 card_template_id" in capsys.readouterr().out
