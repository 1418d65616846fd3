"""[digest]: defaults, and every bad value reported as file:line with the key."""

from __future__ import annotations

from pathlib import Path

from bot.settings import DigestSettings, check, load


def write(tmp_path: Path, digest: str) -> Path:
    path = tmp_path / "returnhub.toml"
    path.write_text(
        '[server]\ntimezone = "Asia/Shanghai"\n\n[wecom.robots]\nops = "k"\n\n'
        f"[digest]\n{digest}\n",
        encoding="utf-8",
    )
    return path


def test_defaults_are_the_managers_at_nine(tmp_path: Path) -> None:
    settings = load(write(tmp_path, ""), env={})
    assert settings.digest == DigestSettings()
    assert settings.digest.roles == ("ops_director", "cs_lead")
    assert (settings.digest.enabled, settings.digest.time) == (True, "09:00")


def test_a_valid_section_loads(tmp_path: Path) -> None:
    path = write(tmp_path, 'time = "18:30"\nroles = ["finance_director"]\nwecom_robots = ["ops"]')
    digest = load(path, env={"RETURNHUB__DIGEST__ENABLED": "false"}).digest
    assert (digest.time, digest.roles, digest.wecom_robots) == (
        "18:30",
        ("finance_director",),
        ("ops",),
    )
    assert digest.enabled is False


def test_bad_values_name_the_file_line_and_key(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        'time = "9:00"\nroles = ["cs_lead", "boss"]\nwecom_robots = ["ops", "sales"]\n'
        'dingtalk_robots = ["x"]',
    )
    errors = check(path, env={})
    assert len(errors) == 4, errors
    time_error, role_error, wecom_error, ding_error = errors
    assert time_error.startswith(f"{path}:8: digest.time: ") and '"HH:MM"' in time_error
    assert role_error.startswith(f"{path}:9: digest.roles: ") and "'boss'" in role_error
    assert wecom_error.startswith(f"{path}:10: digest.wecom_robots: ") and "'sales'" in wecom_error
    assert (
        ding_error.startswith(f"{path}:11: digest.dingtalk_robots: ")
        and "[dingtalk]" in ding_error
    )
    assert check(write(tmp_path, 'time = "24:00"'), env={})[0].endswith('e.g. "09:00"')
