"""Business hours on the work calendar (DESIGN.md §5), for SLA deadlines.

An SLA of "4 business hours" counts only working hours ([calendar] work_start to
work_end, in the operators' zone) on working days: weekends and Chinese statutory
holidays are skipped and make-up workdays (调休) count, from `chinese-calendar`.
Pure functions: times in and out are the naive UTC the database stores.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import chinese_calendar

from handlers.sla_policies import WorkCalendar

# No calendar has a year without a working day; past this the config is broken.
MAX_DAYS = 3660


def is_workday(day: date, calendar: WorkCalendar) -> bool:
    """Statutory holidays and 调休 from chinese-calendar, else (or for a year its data
    does not cover yet) Monday to Friday."""
    if calendar.holidays == "chinese-calendar":
        try:
            return bool(chinese_calendar.is_workday(day))
        except NotImplementedError:
            pass
    return day.weekday() < 5


def add_business_hours(
    start: datetime, hours: float, calendar: WorkCalendar, zone: ZoneInfo
) -> datetime:
    """The moment `hours` working hours after `start` (both naive UTC)."""
    cursor = start.replace(tzinfo=UTC).astimezone(zone)
    remaining = timedelta(hours=hours)
    day = cursor.date()
    for _ in range(MAX_DAYS):
        if is_workday(day, calendar):
            opens = datetime.combine(day, calendar.work_start, tzinfo=zone)
            closes = datetime.combine(day, calendar.work_end, tzinfo=zone)
            begin = max(cursor, opens)
            if begin < closes:
                if begin + remaining <= closes:
                    return (begin + remaining).astimezone(UTC).replace(tzinfo=None)
                remaining -= closes - begin
        day += timedelta(days=1)
    raise ValueError(f"no working day within {MAX_DAYS} days of {start}")
