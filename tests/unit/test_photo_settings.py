"""The [photos] keys: defaults in the example config, validated with file and line."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.events import PhotoStored, Sender, decode, encode
from bot.settings import PhotoSettings, config_dir, load
from bot.settings_load import ConfigError, check


def test_the_example_config_shows_the_defaults() -> None:
    settings = load(config_dir() / "returnhub.example.toml", env={})
    assert settings.photos == PhotoSettings()
    assert (settings.photos.max_bytes, settings.photos.max_pixels) == (10 << 20, 40_000_000)


def test_photo_bounds_must_be_positive(tmp_path: Path) -> None:
    path = tmp_path / "returnhub.toml"
    path.write_text(
        "[photos]\nmax_bytes = 0\nmax_pixels = -1\nevidence_window_minutes = 0\n",
        encoding="utf-8",
    )
    with pytest.raises(ConfigError):
        load(path, env={})
    errors = check(path, env={})
    assert [e.split(": ", 1)[0] for e in errors] == [f"{path}:{n}" for n in (2, 3, 4)]
    assert all("必须为正数" in e for e in errors)
    env = {"RETURNHUB__PHOTOS__EVIDENCE_WINDOW_MINUTES": "5"}
    path.write_text("[photos]\nmax_bytes = 1000\n", encoding="utf-8")
    settings = load(path, env=env)
    assert (settings.photos.max_bytes, settings.photos.evidence_window_minutes) == (1000, 5)


def test_a_stored_photo_event_survives_the_inbound_record() -> None:
    """What the dispatcher stores before acking it is what recovery hands back."""
    event = PhotoStored("photo:wecom:1", Sender("wecom", "xiaozhou"), "ab" * 32, "image/png", 9)
    assert decode(*encode(event)) == event
