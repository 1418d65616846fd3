"""Which SLA stage a case is in, and when its reminders and escalations fall due.

Pure functions of the case and the config (handlers/sla_policies.py), shared by
the steps (an approval card's 处理时限), the timers (handlers/sla.py) and the
views. A stage's clock is a list of `Point`s: reminders at the policy's
fractions (then every `repeat_every`, at most `max_reminders` in all), the
escalation at `escalate_at`, and, when the channel will act by itself, the
deadline margin. After an escalation the clock starts again for the next level.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from handlers.context import Ctx
from handlers.sla_policies import SlaConfig, SlaPolicy
from handlers.workdays import add_business_hours, business_between
from handlers.workflow import Status
from storage.models import ApprovalStep, Case

REMIND, ESCALATE, DEADLINE = "remind", "escalate", "deadline"
_PARCEL = (Status.AWAITING_RETURN.value, Status.IN_TRANSIT.value)
_BY_STATUS = {
    Status.RECEIVED.value: "inspection",
    Status.REFUND_PENDING.value: "refund",
    Status.ON_HOLD.value: "hold",
}


@dataclass(frozen=True, slots=True)
class Point:
    at: datetime  # naive UTC
    action: str  # remind | escalate | deadline
    fraction: float  # of the policy's target (0 for the deadline)


def config(ctx: Ctx) -> SlaConfig:
    return ctx.settings.sla_config


def pending_step(case: Case) -> ApprovalStep | None:
    return next((s for s in case.steps if s.state == "pending"), None)


def approval_stage(step: ApprovalStep) -> str:
    """The first step is the first review; later steps have a policy of their own."""
    return "first_review" if step.seq == 1 else "approval_step"


def stage_of(case: Case) -> tuple[str, ApprovalStep | None] | None:
    """The stage the case waits in and its approval step, or None (nothing to wait for)."""
    if case.status == Status.PENDING_APPROVAL.value:
        step = pending_step(case)
        if step is None:
            return None
        return approval_stage(step), step
    if case.status in _PARCEL:
        return "awaiting_parcel", None
    stage = _BY_STATUS.get(case.status)
    return (stage, None) if stage else None


def policy_of(ctx: Ctx, case: Case, stage: str) -> SlaPolicy | None:
    return config(ctx).policy_for(stage, case.channel, case.tier, case.sla_policy)


def at_fraction(ctx: Ctx, policy: SlaPolicy, started: datetime, fraction: float) -> datetime:
    """The moment `fraction` of the policy's target after `started`."""
    span = policy.target * fraction
    if policy.business:
        return add_business_hours(started, span, ctx.settings.calendar, ctx.zone)
    return started + span


def margin_at(ctx: Ctx, case: Case) -> datetime | None:
    """When the case must be decided by, ahead of the channel's own deadline."""
    if case.channel_deadline_at is None:
        return None
    return case.channel_deadline_at - config(ctx).deadline_margin


def due_at(ctx: Ctx, case: Case, policy: SlaPolicy | None, started: datetime) -> datetime | None:
    """The stage's due time: the policy's 100%, never later than the deadline margin."""
    due = at_fraction(ctx, policy, started, 1.0) if policy is not None else None
    margin = margin_at(ctx, case)
    if margin is not None and (due is None or margin < due):
        return margin
    return due


def left(ctx: Ctx, policy: SlaPolicy | None, now: datetime, due: datetime) -> timedelta:
    """How much time is left until `due`: working time for a business-hours policy."""
    if policy is not None and policy.business:
        return business_between(now, due, ctx.settings.calendar, ctx.zone)
    return max(due - now, timedelta(0))


def points(
    ctx: Ctx,
    case: Case,
    policy: SlaPolicy,
    started: datetime,
    *,
    level: int,
    cap: int,
    escalate_to: str,
    deadline: bool,
) -> list[Point]:
    """The stage clock of one level, in time order. Level 0 has the policy's reminders;
    later levels (after an escalation) only its repeats. `cap` bounds the reminders,
    `escalate_to` "" means no escalation, `deadline` adds the deadline margin."""
    fractions = list(policy.remind_at) if level == 0 else []
    if policy.repeat_every > 0:
        last = fractions[-1] if fractions else 0.0
        while len(fractions) < cap:
            last += policy.repeat_every
            fractions.append(last)
    out = [Point(at_fraction(ctx, policy, started, f), REMIND, f) for f in fractions[:cap]]
    if escalate_to:
        at = at_fraction(ctx, policy, started, policy.escalate_at)
        out.append(Point(at, ESCALATE, policy.escalate_at))
    margin = margin_at(ctx, case)
    if deadline and margin is not None:
        out.append(Point(max(margin, started), DEADLINE, 0.0))
    order = {REMIND: 0, ESCALATE: 1, DEADLINE: 2}
    return sorted(out, key=lambda p: (p.at, order[p.action]))


def format_left(span: timedelta) -> str:
    """'2小时30分' / '15分' / '0分' for a card or a reminder."""
    minutes = max(int(span.total_seconds() // 60), 0)
    days, rest = divmod(minutes, 24 * 60)
    hours, mins = divmod(rest, 60)
    text = (f"{days}天" if days else "") + (f"{hours}小时" if hours else "")
    return text + (f"{mins}分" if mins or not text else "")
