"""The SLA clock: timers armed when a case enters a stage, cancelled when it leaves,
re-armed on a transfer and after an escalation; fired by the clock's tick.

One hook point, not a call in every handler: a session listener notes the cases
whose status, channel deadline, or approval step (state, assignee) changed in the
transaction, and `settle` — called where handler transactions end
(handlers/inbox.py, handlers/intake.py) — reconciles each with its timer. Cases
opened by batch intake with Core statements are armed by `arm_opened`.

A case has at most one pending `sla` timer: the next point of its stage clock
(handlers/sla_plan.py). When it fires, every point that fell due since the last
one is handled together, so a server that was down for an hour sends one
reminder saying how many it missed, and at most one escalation; then the next
point is armed. The tick claims due timers only (storage/timers.py,
`ix_timer_due`), so its cost follows the due timers, not the open cases.

`due_lines` (handlers/views.py `sla_lines`) is what /查单 shows of it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import event, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session, selectinload
from sqlalchemy.orm.attributes import PASSIVE_NO_INITIALIZE, instance_state
from sqlalchemy.orm.util import identity_key

from handlers import notify, views
from handlers import sla_notify as say
from handlers.approvals import load_case
from handlers.context import Ctx
from handlers.people import role_zh
from handlers.sla_plan import (
    DEADLINE,
    ESCALATE,
    REMIND,
    Point,
    config,
    due_at,
    format_left,
    left,
    points,
    policy_of,
    stage_of,
)
from handlers.sla_policies import STAGE_ZH, SlaPolicy
from handlers.workflow import FINAL, Status
from storage import timers
from storage.intake_rows import insert_rows, rows_of
from storage.models import ApprovalStep, Case, Timer

TIMER_KIND = "sla"
TOUCHED = "sla.touched"  # session.info key: ids of cases whose stage may have changed
# session.info key: the cases this transaction wrote, held until `settle` so it finds
# them with their steps (the session's identity map holds a flushed object weakly)
MOVED = "sla.moved"
_CASE_WATCH = ("status", "channel_deadline_at")
_STEP_WATCH = ("state", "assignee_id")
TICK = timedelta(microseconds=1)


@event.listens_for(Session, "before_flush")
def _note_changes(session: Session, _context: Any, _instances: Any) -> None:
    """Remember which cases moved, across every flush of the transaction."""
    touched: set[str] = session.info.setdefault(TOUCHED, set())
    moved: dict[str, Case] = session.info.setdefault(MOVED, {})
    for obj in (*session.new, *session.dirty):
        if isinstance(obj, Case):
            moved[obj.id] = obj  # a step's change may name it: hold it either way
            if _changed(obj, _CASE_WATCH):
                touched.add(obj.id)
        elif isinstance(obj, ApprovalStep) and _changed(obj, _STEP_WATCH):
            case_id = obj.case_id or (obj.case.id if "case" in obj.__dict__ and obj.case else None)
            if case_id:
                touched.add(case_id)


def _changed(obj: Case | ApprovalStep, names: tuple[str, ...]) -> bool:
    # Not `state.attrs[n].history`: `attrs` builds (and keeps on the state) an
    # AttributeState per attribute, each referring back to the state, so every case
    # and step flushed became cyclic garbage for the collector to find.
    state = instance_state(obj)
    return state.pending or any(
        state.get_history(n, PASSIVE_NO_INITIALIZE).has_changes() for n in names
    )


def _iso(moment: datetime | None) -> str:
    return moment.isoformat() if moment is not None else ""


def _at(text: str) -> datetime:
    return datetime.fromisoformat(text)


def _key(case: Case, stage: str, step: ApprovalStep | None) -> dict[str, Any]:
    return {
        "stage": stage,
        "step_id": step.id if step is not None else None,
        "assignee": step.assignee_id if step is not None else None,
        "deadline": _iso(case.channel_deadline_at),
    }


def _same_stage(payload: dict[str, Any], key: dict[str, Any]) -> bool:
    return payload.get("stage") == key["stage"] and payload.get("step_id") == key["step_id"]


def _same(payload: dict[str, Any], key: dict[str, Any]) -> bool:
    return all(payload.get(k) == v for k, v in key.items())


def _points(ctx: Ctx, case: Case, policy: SlaPolicy | None, state: dict[str, Any]) -> list[Point]:
    deadline = not state.get("deadline_done", False)
    if policy is None:
        margin = config(ctx).deadline_margin
        at = case.channel_deadline_at
        if not deadline or at is None:
            return []
        return [Point(max(at - margin, _at(state["started"])), DEADLINE, 0.0)]
    level = int(state.get("level", 0))
    to = policy.escalate_to if level == 0 else config(ctx).next_role(state.get("role", ""))
    return points(
        ctx,
        case,
        policy,
        _at(state["started"]),
        level=level,
        cap=int(state.get("cap", policy.max_reminders)),
        escalate_to=to,
        deadline=deadline,
    )


def _next(
    ctx: Ctx, case: Case, policy: SlaPolicy | None, state: dict[str, Any], after: datetime
) -> Timer | None:
    """The timer for the first point of the stage clock later than `after` (unsaved)."""
    following = next((p for p in _points(ctx, case, policy, state) if p.at > after), None)
    if following is None:
        return None
    return Timer(
        case_id=case.id,
        step_id=state.get("step_id"),
        kind=TIMER_KIND,
        due_at=following.at,
        status=timers.PENDING,
        payload={**state, "after": _iso(after)},
    )


def _arm(
    session: AsyncSession,
    ctx: Ctx,
    case: Case,
    policy: SlaPolicy | None,
    state: dict[str, Any],
    after: datetime,
) -> None:
    """Schedule the next point of the stage clock, in the caller's transaction."""
    timer = _next(ctx, case, policy, state, after)
    if timer is not None:
        session.add(timer)


def _fresh(
    ctx: Ctx, case: Case, stage: str, step: ApprovalStep | None, now: datetime
) -> tuple[SlaPolicy | None, dict[str, Any]]:
    """A stage clock starting now (or when its approval step opened); sets the due times."""
    policy = policy_of(ctx, case, stage)
    origin = step.opened_at if step is not None and step.opened_at else now
    case.sla_due_at = due_at(ctx, case, policy, origin)
    if step is not None:
        step.due_at = case.sla_due_at
    state = {
        **_key(case, stage, step),
        "policy": policy.name if policy else "",
        "origin": _iso(origin),
        "started": _iso(origin),
        "level": 0,
        "role": "",
        "cap": policy.max_reminders if policy else 0,
        "sent": 0,
    }
    return policy, state


async def settle(session: AsyncSession, ctx: Ctx) -> None:
    """Reconcile the timers of every case this transaction moved (see the module doc)."""
    await session.flush()
    ids = session.info.pop(TOUCHED, set())
    if not ids:
        return
    armed: dict[str, list[Timer]] = {}
    pending = await session.scalars(
        select(Timer).where(
            Timer.case_id.in_(sorted(ids)),
            Timer.status == timers.PENDING,
            Timer.kind == TIMER_KIND,
        )
    )
    for timer in pending:
        armed.setdefault(timer.case_id, []).append(timer)
    for case_id in sorted(ids):
        case = await _case(session, case_id)
        if case is not None:
            await _reconcile(session, ctx, case, armed.get(case_id, []))
    await session.flush()
    session.info.pop(TOUCHED, None)  # only our own due times changed since
    session.info.pop(MOVED, None)


async def _case(session: AsyncSession, case_id: str) -> Case | None:
    """The case as this transaction left it, with its steps (one query if not at hand)."""
    held = session.identity_map.get(identity_key(Case, case_id))
    if isinstance(held, Case) and "steps" in held.__dict__:
        return held
    found = await session.scalars(
        select(Case).where(Case.id == case_id).options(selectinload(Case.steps))
    )
    return found.first()


async def _reconcile(session: AsyncSession, ctx: Ctx, case: Case, armed: list[Timer]) -> None:
    now = ctx.now()
    found = stage_of(case)
    key = _key(case, *found) if found else None
    current = armed[0] if armed else None
    if current is not None and key is not None and _same(current.payload, key):
        return
    if armed:
        await session.execute(
            update(Timer)
            .where(Timer.id.in_([t.id for t in armed]), Timer.status == timers.PENDING)
            .values(status=timers.CANCELLED)
            .execution_options(synchronize_session=False)
        )
    moved_on = current is not None and (key is None or not _same_stage(current.payload, key))
    if moved_on and current is not None and _escalated(current.payload):
        stage = STAGE_ZH.get(current.payload.get("stage", ""), "")
        await notify.close_cards(session, ctx, case.id, f"{stage}已处理", kind=say.SLA_CARD)
    if found is None or key is None:
        case.sla_due_at = None
        return
    stage, step = found
    if current is not None and not moved_on:  # a transfer or a new deadline: same clock
        policy = policy_of(ctx, case, stage)
        state = {**current.payload, **key}
        if current.payload.get("deadline") != key["deadline"]:
            state["deadline_done"] = False
            case.sla_due_at = due_at(ctx, case, policy, _at(state["origin"]))
            if step is not None:
                step.due_at = case.sla_due_at
        _arm(session, ctx, case, policy, state, now)
        return
    policy, state = _fresh(ctx, case, stage, step, now)
    _arm(session, ctx, case, policy, state, _at(state["started"]) - TICK)


def _escalated(payload: dict[str, Any]) -> bool:
    return int(payload.get("level", 0)) > 0 or bool(payload.get("deadline_done"))


def arm_opened(
    ctx: Ctx, cases: Sequence[Case], now: datetime
) -> Callable[[AsyncSession], Awaitable[None]]:
    """For batch intake: set the new cases' due times now (before their rows are
    written) and return the step that inserts their timers once the steps have ids."""
    plans = []
    for case in cases:
        found = stage_of(case)
        if found is not None:
            plans.append((case, *found, *_fresh(ctx, case, found[0], found[1], now)))

    async def insert(session: AsyncSession) -> None:
        made = [
            _next(ctx, case, policy, {**state, **_key(case, stage, step)}, now - TICK)
            for case, stage, step, policy, state in plans
        ]
        await insert_rows(session, Timer, rows_of(t for t in made if t is not None))

    return insert


async def fire(session: AsyncSession, ctx: Ctx, timer: Timer) -> None:
    """The timer hook: handle every point that fell due since the last, arm the next."""
    case = await load_case(session, ctx, timer.case_id)
    found = stage_of(case) if case is not None else None
    if case is None or found is None or not _same(timer.payload, _key(case, *found)):
        return  # the case left the stage; its cancel lost the race with this tick
    stage, step = found
    state = dict(timer.payload)
    policy = policy_of(ctx, case, stage)
    now = ctx.now()
    after = _at(state["after"])
    missed = [p for p in _points(ctx, case, policy, state) if after < p.at <= now]
    if case.sla_due_at is not None and now >= case.sla_due_at:
        case.sla_breached = True
    reminders = [p for p in missed if p.action == REMIND]
    held: list[say.Reminder] = []
    if reminders:
        held = await _remind(session, ctx, case, stage, step, policy, reminders)
        state["sent"] = int(state.get("sent", 0)) + len(reminders)
    deadline = next((p for p in missed if p.action == DEADLINE), None)
    if deadline is not None:
        state["deadline_done"] = True
        to = _deadline_role(ctx, policy, state, step)
        why = (
            f"{views.deadline_text(ctx, case)}，距今已不足 "
            f"{format_left(config(ctx).deadline_margin)}，{STAGE_ZH[stage]}仍未完成"
        )
        await say.escalate(session, ctx, case, step, to, why)
    escalation = next((p for p in missed if p.action == ESCALATE), None)
    if escalation is not None and policy is not None:
        level = int(state.get("level", 0))
        to = policy.escalate_to if level == 0 else config(ctx).next_role(state.get("role", ""))
        owner = state.get("role") or say.stage_role(stage, step, policy.notify)
        why = (
            f"{STAGE_ZH[stage]}（{role_zh(owner)}）已用时 "
            f"{round(escalation.fraction * 100)}%，时限 {_stamp(ctx, case.sla_due_at)}，仍未处理"
        )
        await say.escalate(session, ctx, case, step, to, why)
        sent = int(state.get("sent", 0))
        state.update(level=level + 1, role=to, started=_iso(now), cap=policy.max_reminders - sent)
    _arm(session, ctx, case, policy, state, now)
    say.queue(session, held)  # last: a hook that raised before this sends nothing


def _stamp(ctx: Ctx, moment: datetime | None) -> str:
    return views.stamp(ctx, moment) if moment is not None else "—"


def _deadline_role(
    ctx: Ctx, policy: SlaPolicy | None, state: dict[str, Any], step: ApprovalStep | None
) -> str:
    """Who hears that the channel's deadline is near: the configured role, else the
    next role up from whoever owns the stage now, else the admins."""
    cfg = config(ctx)
    if cfg.deadline_escalate_to:
        return cfg.deadline_escalate_to
    owner = state.get("role") or (step.role if step is not None else "")
    return (
        (policy.escalate_to if policy and not state.get("role") else "")
        or cfg.next_role(owner)
        or "admin"
    )


async def _remind(
    session: AsyncSession,
    ctx: Ctx,
    case: Case,
    stage: str,
    step: ApprovalStep | None,
    policy: SlaPolicy | None,
    reminders: list[Point],
) -> list[say.Reminder]:
    """The reminders to send for `reminders` (the admins are told if nobody can get one)."""
    role = say.stage_role(stage, step, policy.notify if policy else "")
    to = await say.who(session, ctx, case, step, role)
    now = ctx.now()
    due = case.sla_due_at
    remaining = format_left(left(ctx, policy, now, due)) if due is not None else ""
    line = say.reminder_line(
        ctx, case, stage, role, reminders[-1].fraction, due, remaining, len(reminders)
    )
    chat = ctx.settings.roles.get(role)
    chat_id = chat.wecom_chat_id if chat is not None else ""
    build = say.card_builder(ctx, case, step, stage)
    if not to:
        roster = await ctx.people.load(session)
        await notify.tell(
            session,
            ctx,
            roster.holders("admin"),
            f"⚠ {line}，但没有「{role_zh(role)}」成员可以提醒",
            case.id,
            alert=True,
        )
    return [say.Reminder(p, case, line, build, step, chat_id) for p in to]


async def finish(session: AsyncSession, ctx: Ctx) -> None:
    """End of a timer batch: send the reminders it collected, coalesced."""
    await say.flush(session, ctx)


# What /查单 shows of the clock (handlers/commands.py calls it with a loaded case).
due_lines = views.sla_lines


def breached(ctx: Ctx, case: Case) -> bool:
    """Whether the case ran past an SLA due time (now, or in an earlier stage)."""
    late = case.sla_due_at is not None and ctx.now() >= case.sla_due_at
    return bool(case.sla_breached) or (late and Status(case.status) not in FINAL)
