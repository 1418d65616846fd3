"""Business hours on the work calendar (DESIGN.md §5), for SLA deadlines.

An SLA of "4 business hours" counts only working time: each day's spans (its
weekday's hours, less the lunch break) on working days, in the calendar's zone.
Statutory holidays are skipped and make-up workdays (调休) count, from
`chinese-calendar`; `closed` days from the config are skipped too. A year the
package has no data for counts Monday to Friday (`unknown_years` says which, for
the start-up report). Pure functions: times in and out are the naive UTC the
database stores.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo

import chinese_calendar

from handlers.sla_policies import Span, WorkCalendar

# No calendar has a year without a working day; past this the config is broken.
MAX_DAYS = 3660
UtcSpan = tuple[datetime, datetime]  # aware UTC


def _official(day: date, calendar: WorkCalendar) -> str:
    """ "holiday" (statutory), "workday" (a weekend made a workday, 调休) or "" (a
    regular day, or a year chinese-calendar does not cover yet)."""
    if calendar.holidays != "chinese-calendar":
        return ""
    return _statutory(day)


@lru_cache(maxsize=4096)
def _statutory(day: date) -> str:
    """`_official` from chinese-calendar's tables, once per day: each of its lookups
    scans every holiday it knows for the years it covers (about 16 µs a call, and an
    SLA clock asks for each day of each reminder's span)."""
    try:
        off, name = chinese_calendar.get_holiday_detail(day)
    except NotImplementedError:
        return ""
    if off and name is not None:
        return "holiday"
    if not off and day.weekday() >= 5:
        return "workday"
    return ""


def day_spans(day: date, calendar: WorkCalendar) -> list[Span]:
    """The working spans of `day` in local wall-clock time ([] on a day off)."""
    official = _official(day, calendar)
    if day in calendar.closed or official == "holiday":
        return []
    hours = calendar.hours_on(day.weekday())
    if hours is None and official == "workday":
        hours = (calendar.work_start, calendar.work_end)
    if hours is None:
        return []
    start, end = hours
    lunch = calendar.lunch
    if lunch is None or lunch[1] <= start or lunch[0] >= end:
        return [hours]
    return [s for s in ((start, max(start, lunch[0])), (min(end, lunch[1]), end)) if s[0] < s[1]]


def is_workday(day: date, calendar: WorkCalendar) -> bool:
    return bool(day_spans(day, calendar))


def unknown_years(calendar: WorkCalendar, years: Iterable[int]) -> list[int]:
    """Which of `years` chinese-calendar has no holiday data for (weekends only then)."""
    if calendar.holidays != "chinese-calendar":
        return []
    missing = []
    for year in years:
        try:
            chinese_calendar.is_workday(date(year, 6, 1))
        except NotImplementedError:
            missing.append(year)
    return missing


def zone_of(calendar: WorkCalendar, zone: ZoneInfo) -> ZoneInfo:
    """The calendar's own zone, else the server's."""
    return ZoneInfo(calendar.timezone) if calendar.timezone else zone


def _spans_from(start: datetime, calendar: WorkCalendar, zone: ZoneInfo) -> Iterator[UtcSpan]:
    """Working spans as aware UTC pairs, from the one holding `start` (naive UTC) on."""
    zone = zone_of(calendar, zone)
    moment = start.replace(tzinfo=UTC)
    day = moment.astimezone(zone).date() - timedelta(days=1)
    for _ in range(MAX_DAYS):
        for begin, end in day_spans(day, calendar):
            opens = _utc(day, begin, zone)
            closes = _utc(day, end, zone)
            if closes > moment:
                yield max(opens, moment), closes
        day += timedelta(days=1)
    raise ValueError(f"no working day within {MAX_DAYS} days of {start}")


def _utc(day: date, at: time, zone: ZoneInfo) -> datetime:
    return datetime.combine(day, at, tzinfo=zone).astimezone(UTC)


@lru_cache(maxsize=1024)
def add_business_hours(
    start: datetime, hours: float | timedelta, calendar: WorkCalendar, zone: ZoneInfo
) -> datetime:
    """The moment `hours` of working time after `start` (both naive UTC).

    Remembered: a batch of new cases opened at one moment asks the same few
    questions (one per policy and reminder fraction) for every case."""
    remaining = hours if isinstance(hours, timedelta) else timedelta(hours=hours)
    if remaining <= timedelta(0):
        return start
    for begin, closes in _spans_from(start, calendar, zone):
        if begin + remaining <= closes:
            return (begin + remaining).replace(tzinfo=None)
        remaining -= closes - begin
    raise AssertionError("unreachable")


def business_between(
    start: datetime, end: datetime, calendar: WorkCalendar, zone: ZoneInfo
) -> timedelta:
    """Working time from `start` to `end` (naive UTC); zero when `end` is not later."""
    total = timedelta(0)
    stop = end.replace(tzinfo=UTC)
    if stop <= start.replace(tzinfo=UTC):
        return total
    for begin, closes in _spans_from(start, calendar, zone):
        if begin >= stop:
            break
        total += min(closes, stop) - begin
    return total
