"""`returnhub console-login NAME`: the admin's one-time sign-in link for a member."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

from bot.cli import main
from bot.web.session import BadSignin, read_code
from storage.secrets import Keyring
from tests.support import SERVER_SECRET, make_settings


def test_prints_a_link_that_signs_in_that_member(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    make_settings(tmp_path, f"sqlite+aiosqlite:///{tmp_path}/cli.db")
    path = str(tmp_path / "returnhub.toml")
    assert main(["db", "upgrade", "--config", path]) == 0
    capsys.readouterr()
    assert main(["console-login", "王组长", "--hours", "2", "--config", path]) == 0
    out = capsys.readouterr().out
    assert "王组长" in out and "2 小时" in out
    link = next(line for line in out.splitlines() if "/console/login?" in line)
    [code] = parse_qs(urlsplit(link).query)["code"]
    now = datetime.now(UTC)
    servers = Keyring(current=SERVER_SECRET)  # what serve loads with this config
    assert read_code(servers, code, now).member == "王组长"
    with pytest.raises(BadSignin):
        read_code(servers, code, now + timedelta(hours=2, minutes=1))


def test_refuses_without_a_database_to_read_the_keyring_from(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    make_settings(tmp_path, f"sqlite+aiosqlite:///{tmp_path}/empty.db")
    path = str(tmp_path / "returnhub.toml")
    assert main(["console-login", "王组长", "--config", path]) == 2
    assert "db upgrade" in capsys.readouterr().err


@pytest.mark.parametrize("args", [["路人"], ["小美", "--hours", "0"], ["小美", "--hours", "200"]])
def test_refuses_an_unknown_member_or_a_bad_lifetime(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str]
) -> None:
    make_settings(tmp_path, f"sqlite+aiosqlite:///{tmp_path}/cli.db")
    assert main(["console-login", *args, "--config", str(tmp_path / "returnhub.toml")]) == 2
    captured = capsys.readouterr()
    assert captured.err and "/console/login" not in captured.out
