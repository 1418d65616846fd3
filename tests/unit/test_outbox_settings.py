"""The [outbox] retry keys: a day-long schedule by default, bad values named by key."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from bot.settings import OutboxSettings, config_dir, load
from tests.unit.test_settings import errors_of, write


def test_the_defaults_retry_for_a_day_with_a_ten_minute_cap() -> None:
    settings = OutboxSettings()
    assert (settings.base_delay_seconds, settings.max_delay_seconds) == (2.0, 600.0)
    assert settings.give_up_after_hours == 24.0
    example = load(config_dir() / "returnhub.example.toml", env={}).outbox
    assert example == settings  # the example config documents the defaults


def test_retry_keys_load_from_file_and_env(tmp_path: Path) -> None:
    path = write(tmp_path, "returnhub.toml", "[outbox]\ngive_up_after_hours = 48\n")
    env = {"RETURNHUB__OUTBOX__MAX_DELAY_SECONDS": "300"}
    outbox = load(path, env=env).outbox
    assert (outbox.give_up_after_hours, outbox.max_delay_seconds) == (48.0, 300.0)


def test_bad_retry_keys_are_named(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "returnhub.toml",
        """
        [outbox]
        give_up_after_hours = 0
        max_delay_seconds = -1
        """,
    )
    errors = errors_of(path)
    assert any(":2: outbox.give_up_after_hours: 必须为正数" in e for e in errors), errors
    assert any(":3: outbox.max_delay_seconds: 必须为正数" in e for e in errors), errors


def test_a_config_from_an_older_release_with_max_attempts_still_loads(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """`outbox.max_attempts` (the old example's key) is ignored with a warning, not fatal."""
    path = tmp_path / "returnhub.toml"
    path.write_text("[outbox]\nmax_attempts = 8\n", encoding="utf-8")
    with caplog.at_level(logging.WARNING):
        settings = load(path, env={})
    assert settings.outbox.give_up_after_hours == 24
    assert "outbox.max_attempts 已停用并被忽略" in caplog.text
