"""Business hours on the Chinese work calendar (DESIGN.md §5): deadlines skip nights,
weekends and statutory holidays, and count make-up workdays (调休)."""

from __future__ import annotations

import dataclasses
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from handlers.intake import on_return_request
from handlers.sla_policies import WorkCalendar
from handlers.workdays import (
    add_business_hours,
    business_between,
    day_spans,
    is_workday,
    unknown_years,
)
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


# --- the calendar's arithmetic as properties, and the fixed cases of the issue -----------

LUNCH = WorkCalendar(lunch=(time(12, 0), time(13, 30)), closed=frozenset({date(2026, 12, 31)}))
WEEKEND_SHIFT = WorkCalendar(
    weekly=(None, *[(time(9, 0), time(18, 0))] * 5, (time(10, 0), time(16, 0))),  # Tue-Sun
)
CALENDARS = st.sampled_from([WorkCalendar(), WorkCalendar(holidays="none"), LUNCH, WEEKEND_SHIFT])
FIRST, LAST = datetime(2024, 12, 20, tzinfo=UTC), datetime(2027, 1, 10, tzinfo=UTC)
MOMENTS = st.datetimes(min_value=FIRST.replace(tzinfo=None), max_value=LAST.replace(tzinfo=None))
MINUTES = st.integers(min_value=1, max_value=60 * 60)


def inside_working_time(moment: datetime, calendar: WorkCalendar) -> bool:
    """`moment` (naive UTC) lies in (open, close] of a working span."""
    here = moment.replace(tzinfo=UTC).astimezone(SHANGHAI)
    for begin, end in day_spans(here.date(), calendar):
        opens = datetime.combine(here.date(), begin, tzinfo=SHANGHAI)
        closes = datetime.combine(here.date(), end, tzinfo=SHANGHAI)
        if opens < here <= closes:
            return True
    return False


@settings(max_examples=150, deadline=None)
@given(CALENDARS, MOMENTS, MINUTES, MINUTES)
def test_the_arithmetic_is_monotone_additive_and_ends_in_working_time(
    calendar: WorkCalendar, start: datetime, a: int, b: int
) -> None:
    first = add_business_hours(start, timedelta(minutes=a), calendar, SHANGHAI)
    both = add_business_hours(start, timedelta(minutes=a + b), calendar, SHANGHAI)
    assert first > start and both > first  # monotone in the duration
    assert add_business_hours(first, timedelta(minutes=b), calendar, SHANGHAI) == both
    assert inside_working_time(first, calendar), "a due time never falls in closed time"
    assert business_between(start, first, calendar, SHANGHAI) == timedelta(minutes=a)
    later = add_business_hours(
        start + timedelta(minutes=b), timedelta(minutes=a), calendar, SHANGHAI
    )
    assert later >= first  # monotone in the start


@pytest.mark.parametrize(
    ("start", "hours", "due"),
    [
        (local(2026, 11, 27, 17, 30), 4, local(2026, 11, 30, 12, 30)),  # the Friday
        (local(2025, 9, 30, 17, 0), 4, local(2025, 10, 9, 12, 0)),  # National Day 2025
        (local(2025, 9, 30, 17, 0), 24, local(2025, 10, 11, 14, 0)),  # make-up Sat 10-11
        (local(2025, 9, 27, 10, 0), 9, local(2025, 9, 28, 18, 0)),  # make-up Sun 9-28
        (local(2026, 9, 30, 17, 0), 24, local(2026, 10, 10, 14, 0)),  # make-up Sat 10-10
        (local(2026, 2, 13, 17, 0), 4, local(2026, 2, 14, 12, 0)),  # Spring Festival 2026
        (local(2026, 2, 14, 17, 0), 4, local(2026, 2, 24, 12, 0)),  # 2-15..2-23 are off
        (local(2025, 1, 27, 17, 0), 4, local(2025, 2, 5, 12, 0)),  # Spring Festival 2025
        (local(2025, 4, 30, 17, 0), 4, local(2025, 5, 6, 12, 0)),  # Labour Day 2025
    ],
)
def test_the_2025_and_2026_holidays(start: datetime, hours: float, due: datetime) -> None:
    assert add_business_hours(start, hours, WorkCalendar(), SHANGHAI) == due


def test_lunch_breaks_and_closed_days_do_not_count() -> None:
    assert add_business_hours(local(2026, 12, 1, 11, 0), 2, LUNCH, SHANGHAI) == local(
        2026, 12, 1, 14, 30
    )
    # 12-31 is closed by the config; 2027-01-01 is a Friday the package does not know yet
    assert add_business_hours(local(2026, 12, 30, 17, 0), 2, LUNCH, SHANGHAI) == local(
        2027, 1, 1, 10, 0
    )


def test_per_weekday_hours_and_the_calendars_own_zone() -> None:
    monday = local(2026, 11, 30, 10, 0)  # closed in WEEKEND_SHIFT
    assert add_business_hours(monday, 1, WEEKEND_SHIFT, SHANGHAI) == local(2026, 12, 1, 10, 0)
    saturday = local(2026, 11, 28, 17, 0)  # an hour on Saturday, then Sunday from 10:00
    assert add_business_hours(saturday, 2, WEEKEND_SHIFT, SHANGHAI) == local(2026, 11, 29, 11, 0)
    tokyo = WorkCalendar(timezone="Asia/Tokyo", holidays="none")
    nine_tokyo = local(2026, 12, 1, 8, 0)  # 09:00 in Tokyo
    assert add_business_hours(nine_tokyo, 1, tokyo, SHANGHAI) == local(2026, 12, 1, 9, 0)


def test_years_without_holiday_data_are_named_for_the_start_up_report() -> None:
    assert unknown_years(WorkCalendar(), (2025, 2026, 2031)) == [2031]
    assert unknown_years(WorkCalendar(holidays="none"), (2031,)) == []
    assert is_workday(date(2031, 1, 3), WorkCalendar())  # a Friday: weekdays still count
