"""sla.toml is validated at start-up and by `returnhub check-config`: every mistake in
a policy, the calendar, the stages, the overrides or the deadline names its file and
line, all at once; the packaged file reproduces the seeds' policies."""

from __future__ import annotations

from datetime import date, time, timedelta
from pathlib import Path

import pytest

from bot.cli import main
from bot.settings import config_dir, load
from bot.startup_report import startup_report
from tests.unit.test_settings import errors_of, write


def test_the_packaged_sla_toml_times_every_stage() -> None:
    settings = load(config_dir() / "returnhub.example.toml", env={})
    sla = settings.sla_config
    assert set(sla.stages) == {
        "first_review", "approval_step", "awaiting_parcel", "inspection", "refund", "hold",
    }  # fmt: skip
    first = sla.policies["first_review"]
    assert (first.business_hours, first.remind_at, first.escalate_at) == (4, (0.5, 1.0), 1.5)
    assert sla.policies["refund"].target == timedelta(hours=24)
    assert not sla.policies["refund"].business
    assert sla.chain == ("cs_lead", "ops_director", "admin")
    assert sla.deadline_margin == timedelta(hours=2)
    assert sla.next_role("cs_lead") == "ops_director" and sla.next_role("admin") == ""


def test_overrides_by_channel_beat_the_tier_which_beats_the_stage_default(
    tmp_path: Path,
) -> None:
    main_file = write(tmp_path, "returnhub.toml", "")
    write(
        tmp_path,
        "sla.toml",
        """
        [calendar]
        lunch_start = "12:00"
        lunch_end = "13:30"
        closed = ["2026-12-31"]
        timezone = "Asia/Shanghai"
        [calendar.hours]
        sat = "10:00-16:00"
        [policies.first_review]
        business_hours = 4
        [policies.director_review]
        business_hours = 8
        [policies.slow]
        business_hours = 8
        [policies.fast]
        minutes = 30
        [policies.mid]
        hours = 2
        [stages]
        inspection = "slow"
        [overrides.tier.director]
        inspection = "mid"
        [overrides.channel.douyin]
        inspection = "fast"
        """,
    )
    sla = load(main_file, env={}).sla_config
    assert sla.policy_for("inspection", "generic", "cs_lead", "") == sla.policies["slow"]
    assert sla.policy_for("inspection", "generic", "director", "") == sla.policies["mid"]
    assert sla.policy_for("inspection", "douyin", "director", "") == sla.policies["fast"]
    assert sla.policy_for("first_review", "generic", "cs_lead", "mid") == sla.policies["mid"]
    assert sla.policy_for("refund", "generic", "cs_lead", "") is None
    calendar = sla.calendar
    assert calendar.lunch == (time(12, 0), time(13, 30))
    assert calendar.closed == frozenset({date(2026, 12, 31)})
    assert calendar.hours_on(5) == (time(10, 0), time(16, 0)) and calendar.hours_on(0) is None


def test_every_sla_mistake_is_reported_with_its_line(tmp_path: Path) -> None:
    main_file = write(tmp_path, "returnhub.toml", "")
    sla = write(
        tmp_path,
        "sla.toml",
        """
        escalation = ["cs_lead", "boss"]
        [calendar]
        lunch_start = "12:00"
        lunch_end = "11:00"
        closed = ["31/12/2026"]
        timezone = "Mars/Olympus"
        [calendar.hours]
        funday = "09:00-10:00"
        [policies.both]
        business_hours = 4
        hours = 4
        [policies.none]
        remind_at = [0.5]
        [policies.negative]
        minutes = 10
        repeat_every = -1
        notify = "nobody"
        [stages]
        review = "both"
        inspection = "missing"
        [overrides.channel.douyin]
        first_review = "missing"
        [overrides.shop]
        x = 1
        [deadline]
        margin_minutes = -5
        escalate_to = "ghost"
        """,
    )
    errors = errors_of(main_file)
    lines = [int(e.split(":")[1]) for e in errors if e.startswith(str(sla))]
    assert lines == [1, 4, 5, 6, 8, 11, 12, 16, 17, 19, 20, 22, 23, 26, 27], errors
    others = [e for e in errors if not e.startswith(str(sla))]
    assert all("routing.toml" in e and "未知 SLA 策略" in e for e in others), others


def test_check_config_exits_2_and_names_the_sla_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    main_file = write(tmp_path, "returnhub.toml", "")
    write(
        tmp_path,
        "sla.toml",
        "[policies.first_review]\nminutes = 0\n[policies.director_review]\nhours = 8\n",
    )
    assert main(["check-config", "--config", str(main_file)]) == 2
    out = capsys.readouterr()
    assert f"{tmp_path / 'sla.toml'}:2:" in out.out + out.err


def test_a_year_without_holiday_data_is_a_start_up_warning_not_a_crash() -> None:
    settings = load(config_dir() / "returnhub.example.toml", env={})
    lines = [line.text for line in startup_report(settings, date(2031, 6, 1))]
    assert any("chinese-calendar 没有 2031、2032 年的节假日数据" in t for t in lines), lines
    assert not any(
        "节假日数据" in line.text for line in startup_report(settings, date(2025, 3, 1))
    )
