"""SLA policy types and the parser for config/sla.toml (DESIGN.md §5, docs/sla.md).

Only the data: how long each stage may take (business hours on the work calendar,
or natural hours/minutes), when to remind, when and to whom to escalate, which
policy each stage uses (per tier and per channel), and the calendar itself. The
timers that act on them live in handlers/sla.py. Validated at start-up like the
routing rules, so a typo in a role or a fraction fails loudly instead of never
escalating.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from datetime import date, time, timedelta
from typing import Any

from bot.config_locate import Key, Report, build, zone_problem

HOLIDAY_SOURCES = frozenset({"chinese-calendar", "none"})
_HHMM = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)$")
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")

# The stages a case waits in, in the order a case meets them.
STAGES = ("first_review", "approval_step", "awaiting_parcel", "inspection", "refund", "hold")
STAGE_ZH = {
    "first_review": "首次审批",
    "approval_step": "审批",
    "awaiting_parcel": "等待买家寄回",
    "inspection": "验货",
    "refund": "退款到账",
    "hold": "异常处理",
}
# Who is reminded in a stage without an approval step, unless the policy says `notify`.
STAGE_NOTIFY = {
    "awaiting_parcel": "cs_agent",
    "inspection": "warehouse",
    "refund": "finance_director",
    "hold": "risk",
}
DEFAULT_CHAIN = ("cs_lead", "ops_director", "admin")
Span = tuple[time, time]


@dataclass(frozen=True)
class SlaPolicy:
    """The deadline of one stage: `business_hours` on the calendar, or natural
    `hours` + `minutes`. Fractions are of that target (1.0 = the deadline).

    After the last `remind_at`, a reminder repeats every `repeat_every` (0: never),
    `max_reminders` in all. An empty `escalate_to` means reminders only; after the
    first escalation the next goes one step up `escalation`, `escalate_at` later.
    """

    name: str
    business_hours: float = 0.0
    hours: float = 0.0
    minutes: float = 0.0
    remind_at: tuple[float, ...] = (0.5, 1.0)
    escalate_at: float = 1.5
    escalate_to: str = ""
    repeat_every: float = 0.0
    max_reminders: int = 10
    notify: str = ""

    @property
    def business(self) -> bool:
        return self.business_hours > 0

    @property
    def target(self) -> timedelta:
        """Working time (business) or natural time the stage may take."""
        if self.business:
            return timedelta(hours=self.business_hours)
        return timedelta(hours=self.hours, minutes=self.minutes)


@dataclass(frozen=True)
class WorkCalendar:
    """Working hours in `timezone` (empty: the server's); holidays from
    `chinese-calendar` (with 调休) or none; `weekly` per weekday (None: Monday to
    Friday, work_start to work_end); `closed` extra days off."""

    work_start: time = time(9, 0)
    work_end: time = time(18, 0)
    holidays: str = "chinese-calendar"
    lunch: Span | None = None
    timezone: str = ""
    closed: frozenset[date] = frozenset()
    weekly: tuple[Span | None, ...] | None = None

    def hours_on(self, weekday: int) -> Span | None:
        """The regular hours of a weekday (0 = Monday), None if it is a day off."""
        if self.weekly is not None:
            return self.weekly[weekday]
        return (self.work_start, self.work_end) if weekday < 5 else None


@dataclass(frozen=True)
class _CalendarSpec:
    work_start: str = "09:00"
    work_end: str = "18:00"
    holidays: str = "chinese-calendar"
    lunch_start: str = ""
    lunch_end: str = ""
    timezone: str = ""
    closed: tuple[str, ...] = ()
    hours: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class _DeadlineSpec:
    margin_minutes: float = 120.0
    escalate_to: str = ""


@dataclass(frozen=True)
class SlaConfig:
    policies: dict[str, SlaPolicy] = field(default_factory=dict)
    calendar: WorkCalendar = WorkCalendar()
    stages: dict[str, str] = field(default_factory=dict)  # stage -> policy name
    by_channel: dict[str, dict[str, str]] = field(default_factory=dict)
    by_tier: dict[str, dict[str, str]] = field(default_factory=dict)
    chain: tuple[str, ...] = DEFAULT_CHAIN
    deadline_margin: timedelta = timedelta(hours=2)
    deadline_escalate_to: str = ""

    def policy_for(self, stage: str, channel: str, tier: str, routed: str) -> SlaPolicy | None:
        """The policy of `stage`: the channel's override, the tier's, the routing tier's
        `sla` (approval stages), then `[stages]`; None: the stage is not timed."""
        name = (
            self.by_channel.get(channel, {}).get(stage)
            or self.by_tier.get(tier, {}).get(stage)
            or (routed if stage in ("first_review", "approval_step") else "")
            or self.stages.get(stage, "")
        )
        return self.policies.get(name)

    def next_role(self, role: str) -> str:
        """The role above `role` on the escalation chain, "" at its top."""
        if role in self.chain:
            at = self.chain.index(role)
            return self.chain[at + 1] if at + 1 < len(self.chain) else ""
        return self.chain[-1] if self.chain and role != self.chain[-1] else ""


def _clock(text: str, path: Key, report: Report) -> time | None:
    m = _HHMM.match(text)
    if m is None:
        report.at(path, f"calendar.{path[-1]}: 应为 HH:MM，实际是 {text!r} / expected HH:MM")
        return None
    return time(int(m.group(1)), int(m.group(2)))


def _span(start: time | None, end: time | None, path: Key, report: Report) -> Span | None:
    if start is None or end is None:
        return None
    if start >= end:
        report.at(path, "calendar: 结束时间必须晚于开始时间 / the end must be after the start")
        return None
    return start, end


def _weekly(hours: dict[str, str], report: Report) -> tuple[Span | None, ...] | None:
    if not hours:
        return None
    week: list[Span | None] = [None] * 7
    for name, text in hours.items():
        path: Key = ("calendar", "hours", name)
        if name not in WEEKDAYS:
            report.at(path, f"calendar.hours: 未知星期 {name!r}，应为 mon…sun / unknown weekday")
            continue
        if text:
            start, _, end = text.partition("-")
            week[WEEKDAYS.index(name)] = _span(
                _clock(start, path, report), _clock(end, path, report), path, report
            )
    return tuple(week)


def _days(texts: tuple[str, ...], report: Report) -> frozenset[date]:
    days = set()
    for text in texts:
        try:
            days.add(date.fromisoformat(text))
        except ValueError:
            report.at(
                ("calendar", "closed"),
                f"calendar.closed: 应为 YYYY-MM-DD，实际是 {text!r} / expected YYYY-MM-DD",
            )
    return frozenset(days)


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
    lunch = None
    if spec.lunch_start or spec.lunch_end:
        path: Key = ("calendar", "lunch_end")
        lunch = _span(
            _clock(spec.lunch_start, ("calendar", "lunch_start"), report),
            _clock(spec.lunch_end, path, report),
            path,
            report,
        )
    if spec.timezone and (problem := zone_problem(spec.timezone)):
        report.at(("calendar", "timezone"), f"calendar.timezone: {problem}")
    default = WorkCalendar()
    return WorkCalendar(
        start or default.work_start,
        end or default.work_end,
        spec.holidays,
        lunch,
        spec.timezone,
        _days(spec.closed, report),
        _weekly(spec.hours, report),
    )


def _check(
    policy: SlaPolicy,
    path: Key,
    report: Report,
    known_roles: Collection[str] | None,
    targets: list[str],
) -> None:
    label = f"policy {policy.name!r}"
    if policy.business_hours and (policy.hours or policy.minutes):
        report.at(
            (*path, "hours" if policy.hours else "minutes"),
            f"{label}: business_hours 与 hours/minutes 只能选一种 "
            "/ give business_hours or hours/minutes, not both",
        )
    if any(getattr(policy, k) < 0 for k in targets) or policy.target <= timedelta(0):
        report.at(
            (*path, targets[0] if targets else "business_hours"),
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
    if policy.repeat_every < 0 or policy.max_reminders < 0:
        report.at(
            (*path, "repeat_every" if policy.repeat_every < 0 else "max_reminders"),
            f"{label}: repeat_every / max_reminders 不能为负 / must not be negative",
        )
    for key in ("escalate_to", "notify"):
        role = getattr(policy, key)
        if role and known_roles is not None and role not in known_roles:
            report.at((*path, key), f"{label}: 未知角色 / unknown role {role!r}")


def _stage_map(table: Any, path: Key, report: Report, names: Collection[str]) -> dict[str, str]:
    if not isinstance(table, dict):
        report.at(path, f"{path[0]}: 应为表 / expected a table")
        return {}
    out: dict[str, str] = {}
    for stage, name in table.items():
        here = (*path, stage)
        if stage not in STAGES:
            report.at(here, f"未知阶段 / unknown stage {stage!r}（可用：{'、'.join(STAGES)}）")
        elif not isinstance(name, str) or name not in names:
            report.at(here, f"{stage}: 未知 SLA 策略 / unknown SLA policy {name!r}")
        else:
            out[stage] = name
    return out


def _overrides(
    table: Any, report: Report, names: Collection[str]
) -> tuple[dict[str, dict[str, str]], dict[str, dict[str, str]]]:
    found: dict[str, dict[str, dict[str, str]]] = {"channel": {}, "tier": {}}
    if not isinstance(table, dict):
        report.at(("overrides",), "overrides: 应为表 / expected a table")
        return {}, {}
    for kind, per in table.items():
        if kind not in found or not isinstance(per, dict):
            report.at(("overrides", kind), f"overrides: 应为 channel 或 tier / unknown {kind!r}")
            continue
        for key, stages in per.items():
            found[kind][key] = _stage_map(stages, ("overrides", kind, key), report, names)
    return found["channel"], found["tier"]


def _roles(chain: Any, report: Report, known_roles: Collection[str] | None) -> tuple[str, ...]:
    if not isinstance(chain, list) or not all(isinstance(r, str) for r in chain):
        report.at(("escalation",), "escalation: 应为角色列表 / expected a list of roles")
        return DEFAULT_CHAIN
    for role in chain:
        if known_roles is not None and role not in known_roles:
            report.at(("escalation",), f"escalation: 未知角色 / unknown role {role!r}")
    return tuple(chain)


def parse_sla(
    data: Mapping[str, Any],
    report: Report | None = None,
    *,
    known_roles: Collection[str] | None = None,
) -> tuple[SlaConfig, list[str]]:
    """Validate sla.toml data: `[calendar]`, `[policies.<name>]` tables, `[stages]`,
    `[overrides.channel.<c>]` / `[overrides.tier.<t>]`, `escalation`, `[deadline]`."""
    report = report or Report("sla.toml")
    known_keys = ("calendar", "policies", "stages", "overrides", "escalation", "deadline")
    for key in data:
        if key not in known_keys:
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
            targets = [k for k in ("business_hours", "hours", "minutes") if k in table]
            _check(policy, path, report, known_roles, targets)
            policies[name] = policy
    stages = _stage_map(data.get("stages", {}), ("stages",), report, policies)
    by_channel, by_tier = _overrides(data.get("overrides", {}), report, policies)
    chain = _roles(data.get("escalation", list(DEFAULT_CHAIN)), report, known_roles)
    deadline = build(_DeadlineSpec, data.get("deadline", {}), ("deadline",), report)
    deadline = deadline or _DeadlineSpec()
    if deadline.margin_minutes < 0:
        report.at(("deadline", "margin_minutes"), "deadline.margin_minutes 不能为负 / negative")
    to = deadline.escalate_to
    if to and known_roles is not None and to not in known_roles:
        report.at(("deadline", "escalate_to"), f"deadline: 未知角色 / unknown role {to!r}")
    config = SlaConfig(
        policies,
        calendar,
        stages,
        by_channel,
        by_tier,
        chain,
        timedelta(minutes=max(deadline.margin_minutes, 0.0)),
        to,
    )
    return config, report.errors
