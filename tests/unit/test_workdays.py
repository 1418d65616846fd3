"""Business hours on the Chinese work calendar (DESIGN.md §5): deadlines skip nights,
weekends and statutory holidays, and count make-up workdays (调休)."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest

from handlers.intake import on_return_request
from handlers.sla_policies import WorkCalendar
from handlers.workdays import add_business_hours
from storage.db import Database
from tests.unit.test_flow import outbox, request, setup

SHANGHAI = ZoneInfo("Asia/Shanghai")


def local(year: int, month: int, day: int, hour: int, minute: int) -> datetime:
    """A Shanghai wall-clock time as the naive UTC the database stores."""
    moment = datetime(year, month, day, hour, minute, tzinfo=SHANGHAI)
    return moment.astimezone(UTC).replace(tzinfo=None)


@pytest.mark.parametrize(
    ("start", "hours", "due"),
    [
        (local(2026, 11, 23, 10, 0), 4, local(2026, 11, 23, 14, 0)),  # inside one day
        (local(2026, 11, 23, 7, 0), 4, local(2026, 11, 23, 13, 0)),  # before work starts
        (local(2026, 11, 23, 20, 0), 4, local(2026, 11, 24, 13, 0)),  # after work ends
        (local(2026, 11, 27, 17, 0), 4, local(2026, 11, 30, 12, 0)),  # Friday -> Monday
        (local(2026, 11, 28, 10, 0), 4, local(2026, 11, 30, 13, 0)),  # from a Saturday
        (local(2026, 9, 30, 16, 0), 4, local(2026, 10, 8, 11, 0)),  # over National Day
        (local(2026, 10, 9, 17, 0), 4, local(2026, 10, 10, 12, 0)),  # 调休 Saturday works
        (local(2026, 11, 23, 10, 0), 24, local(2026, 11, 25, 16, 0)),  # several days
        (local(2026, 11, 23, 18, 0), 9, local(2026, 11, 24, 18, 0)),  # a whole day exactly
    ],
)
def test_deadlines_count_working_hours_only(start: datetime, hours: float, due: datetime) -> None:
    assert add_business_hours(start, hours, WorkCalendar(), SHANGHAI) == due


def test_without_holidays_only_weekends_are_skipped() -> None:
    calendar = WorkCalendar(holidays="none")
    start = local(2026, 10, 1, 10, 0)  # National Day, but a Thursday
    assert add_business_hours(start, 4, calendar, SHANGHAI) == local(2026, 10, 1, 14, 0)


def test_years_the_holiday_data_does_not_cover_fall_back_to_weekdays() -> None:
    start = local(2031, 1, 3, 17, 0)  # a Friday
    assert add_business_hours(start, 4, WorkCalendar(), SHANGHAI) == local(2031, 1, 6, 12, 0)


async def test_an_approval_card_shows_the_business_hours_deadline(db: Database) -> None:
    base = await setup(db)
    friday_evening = datetime(2026, 11, 27, 9, 0, tzinfo=UTC)  # 17:00 in Shanghai
    ctx = dataclasses.replace(base, clock=lambda: friday_evening)
    await on_return_request(request(1, 13200), ctx)  # cs_lead: 4 business hours
    card = (await outbox(db, "card.send"))[0].payload["card"]
    assert ["处理时限", "11-30 12:00"] in [list(f) for f in card["fields"]]
