"""SLA policy types and the parser for config/sla.toml (DESIGN.md §5).

Only the data: how long a stage may take in business hours, when to remind,
when and to whom to escalate, and the working calendar. The timers that act on
them live in handlers/sla.py. Validated at start-up like the routing rules, so
a typo in a role or a fraction fails loudly instead of never escalating.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from datetime import time
from typing import Any

from bot.config_locate import Key, Report, build

HOLIDAY_SOURCES = frozenset({"chinese-calendar", "none"})
_HHMM = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)$")


@dataclass(frozen=True)
class SlaPolicy:
    """Deadline of one stage; fractions are of `business_hours` (1.0 = the deadline).

    An empty `escalate_to` means reminders only, no escalation.
    """

    name: str
    business_hours: float
    remind_at: tuple[float, ...] = (0.5, 1.0)
    escalate_at: float = 1.5
    escalate_to: str = ""


@dataclass(frozen=True)
class WorkCalendar:
    """Working hours in the server's zone; holidays: `chinese-calendar` (with 调休) or none."""

    work_start: time = time(9, 0)
    work_end: time = time(18, 0)
    holidays: str = "chinese-calendar"


@dataclass(frozen=True)
class _CalendarSpec:
    work_start: str = "09:00"
    work_end: str = "18:00"
    holidays: str = "chinese-calendar"


@dataclass(frozen=True)
class SlaConfig:
    policies: dict[str, SlaPolicy] = field(default_factory=dict)
    calendar: WorkCalendar = WorkCalendar()


def _clock(text: str, path: Key, report: Report) -> time | None:
    m = _HHMM.match(text)
    if m is None:
        report.at(path, f"calendar.{path[-1]}: 应为 HH:MM，实际是 {text!r} / expected HH:MM")
        return None
    return time(int(m.group(1)), int(m.group(2)))


def _calendar(table: Any, report: Report) -> WorkCalendar:
    spec = build(_CalendarSpec, table, ("calendar",), report) or _CalendarSpec()
    start = _clock(spec.work_start, ("calendar", "work_start"), report)
    end = _clock(spec.work_end, ("calendar", "work_end"), report)
    if start is not None and end is not None and start >= end:
        report.at(
            ("calendar", "work_end"),
            "calendar: work_end 必须晚于 work_start / work_end must be after work_start",
        )
    if spec.holidays not in HOLIDAY_SOURCES:
        report.at(
            ("calendar", "holidays"),
            'calendar.holidays: 应为 "chinese-calendar" 或 "none" '
            '/ expected "chinese-calendar" or "none"',
        )
    default = WorkCalendar()
    return WorkCalendar(start or default.work_start, end or default.work_end, spec.holidays)


def _check(
    policy: SlaPolicy, path: Key, report: Report, known_roles: Collection[str] | None
) -> None:
    label = f"policy {policy.name!r}"
    if policy.business_hours <= 0:
        report.at(
            (*path, "business_hours"),
            f"{label}: business_hours 必须为正数 / business_hours must be positive",
        )
    if any(f <= 0 for f in policy.remind_at) or list(policy.remind_at) != sorted(policy.remind_at):
        report.at(
            (*path, "remind_at"),
            f"{label}: remind_at 必须为正数且递增 / remind_at must be positive and ascending",
        )
    if policy.escalate_at <= 0:
        report.at(
            (*path, "escalate_at"),
            f"{label}: escalate_at 必须为正数 / escalate_at must be positive",
        )
    if policy.escalate_to and known_roles is not None and policy.escalate_to not in known_roles:
        report.at(
            (*path, "escalate_to"), f"{label}: 未知角色 / unknown role {policy.escalate_to!r}"
        )


def parse_sla(
    data: Mapping[str, Any],
    report: Report | None = None,
    *,
    known_roles: Collection[str] | None = None,
) -> tuple[SlaConfig, list[str]]:
    """Validate sla.toml data: `[calendar]` plus one `[policies.<name>]` table per stage."""
    report = report or Report("sla.toml")
    for key in data:
        if key not in ("calendar", "policies"):
            report.at((key,), f"未知配置项 / unknown key {key}")
    calendar = _calendar(data.get("calendar", {}), report)
    policies: dict[str, SlaPolicy] = {}
    tables = data.get("policies", {})
    if not isinstance(tables, dict):
        report.at(
            ("policies",),
            "policies: 应为 [policies.first_review] 这样的表 "
            "/ expected tables like [policies.first_review]",
        )
        tables = {}
    for name, table in tables.items():
        path: Key = ("policies", name)
        policy = build(SlaPolicy, table, path, report, name=name)
        if policy is not None:
            _check(policy, path, report, known_roles)
            policies[name] = policy
    return SlaConfig(policies, calendar), report.errors
