"""A newer channel version that changes the request: apply it, re-route it, or refuse it.

Never acknowledge and drop (issue 6 C). What a newer `requested`/`buyer_shipped`
event may change: amount, kind, reason, items.

- Before a decision (pending_approval): the fields are stored and the case is
  routed again. A different tier (or chain of steps) closes the old approval
  cards as superseded, removes the old steps and their timers, and opens the new
  tier's first step (or auto-approves); the audit row says old -> new amount and
  tier. The same tier keeps its chain and SLA clock; the current step's cards
  are replaced so the approver sees, and can only act on, the new request.
- From approval on (approved or later, or a final state): the decision covers
  what was asked, so a changed amount or kind, or a change that would route
  elsewhere, is refused with `Refused` (HTTP 409) and nothing is stored; other
  corrections (item names, reason text) are stored and audited.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from bot.events import ReturnRequest
from bot.money import yuan_zh
from handlers import create, notify, steps
from handlers.context import Ctx
from handlers.routing import Decision
from handlers.workflow import FINAL, STATUS_ZH, Actor, Status, audit, fire, must
from storage import timers
from storage.models import ApprovalStep, Case, Customer

BEFORE_DECISION = frozenset({Status.REQUESTED, Status.PENDING_APPROVAL})
LOCKED = ("amount_fen", "kind")  # what an approval decided on
KIND_ZH = {"refund_only": "仅退款", "return_refund": "退货退款", "exchange": "换货"}
FIELD_ZH = {"amount_fen": "金额", "kind": "类型", "reason": "原因", "items": "商品明细"}
FIELD_EN = {"amount_fen": "amount", "kind": "kind", "reason": "reason", "items": "items"}


class Refused(Exception):
    """The event conflicts with the case as it stands: 409, and nothing is stored."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def _items(rows: Any) -> list[tuple[str, str, int, int, str]]:
    return [(i.sku, i.name, i.qty, i.unit_price_fen, i.category) for i in rows]


def changes(case: Case, event: ReturnRequest) -> dict[str, tuple[Any, Any]]:
    """What the event changes, field -> (old, new); `case.items` must be loaded."""
    found: dict[str, tuple[Any, Any]] = {}
    if event.amount_fen != case.amount_fen:
        found["amount_fen"] = (case.amount_fen, event.amount_fen)
    if event.kind != case.kind:
        found["kind"] = (case.kind, event.kind)
    old_reason, new_reason = (
        (case.reason_code, case.reason_text),
        (
            event.reason_code,
            event.reason_text,
        ),
    )
    if new_reason != old_reason:
        found["reason"] = (list(old_reason), list(new_reason))
    old_items, new_items = _items(case.items), _items(event.items)
    if new_items != old_items:
        found["items"] = (old_items, new_items)
    return found


def _describe(ctx: Ctx, changed: dict[str, tuple[Any, Any]], tiers: tuple[str, str]) -> str:
    parts = []
    if "amount_fen" in changed:
        old, new = changed["amount_fen"]
        parts.append(f"金额 {yuan_zh(old)} → {yuan_zh(new)}")
    if "kind" in changed:
        old, new = changed["kind"]
        parts.append(f"类型 {KIND_ZH.get(old, old)} → {KIND_ZH.get(new, new)}")
    parts += [f"{FIELD_ZH[f]}已更新" for f in ("reason", "items") if f in changed]
    if tiers[0] != tiers[1]:
        label = ctx.settings.routing.label
        parts.append(f"档位「{label(tiers[0])}」→「{label(tiers[1])}」")
    return "，".join(parts)


async def revise(
    session: AsyncSession, ctx: Ctx, case: Case, event: ReturnRequest, channel: Actor
) -> bool:
    """Apply what `event` changes on `case` (items and steps loaded); False if nothing.

    Raises Refused when the change comes too late; the caller's transaction then
    rolls back, so nothing of the event (not even its inbox key) is stored.
    """
    changed = changes(case, event)
    if not changed:
        return False
    flagged = bool(
        case.buyer_ref
        and await session.scalar(
            select(Customer.flagged).where(
                Customer.channel == case.channel, Customer.buyer_ref == case.buyer_ref
            )
        )
    )
    status, old_tier = Status(case.status), case.tier
    # Before a decision the case must match its stored route; after one, only the
    # event's own changes count (not, say, a customer flagged since).
    before = (
        (old_tier, tuple(s.role for s in case.steps))
        if status in BEFORE_DECISION
        else _route_of(create.decide(ctx, case, flagged=flagged))
    )
    _store(case, event)
    decision = create.decide(ctx, case, flagged=flagged)
    rerouted = _route_of(decision) != before
    why = _describe(ctx, changed, (old_tier, decision.tier))
    detail: dict[str, Any] = {"version": event.version, "changes": changed}
    if rerouted:
        detail["tier"] = [old_tier, decision.tier]
    if status not in BEFORE_DECISION:
        locked = [f for f in LOCKED if f in changed] + (["tier"] if rerouted else [])
        if locked:
            raise Refused(_too_late(case, status, locked, why))
        session.add(audit(case.id, channel, "revised", ctx.now(), status, status, why, detail))
        return True
    if rerouted:
        await _reroute(session, ctx, case, decision, channel, why, detail)
    else:
        session.add(audit(case.id, channel, "revised", ctx.now(), status, status, why, detail))
        await _resend(session, ctx, case, why)
    return True


def _route_of(decision: Decision) -> tuple[str, tuple[str, ...]]:
    return decision.tier, decision.steps


def _store(case: Case, event: ReturnRequest) -> None:
    case.amount_fen, case.kind = event.amount_fen, event.kind
    case.reason_code, case.reason_text = event.reason_code, event.reason_text
    if _items(case.items) != _items(event.items):
        case.items = create.case_items(event.items)


def _too_late(case: Case, status: Status, locked: list[str], why: str) -> str:
    what_zh = "、".join(FIELD_ZH.get(f, "审批档位") for f in locked)
    what_en = ", ".join(FIELD_EN.get(f, "approval tier") for f in locked)
    stage_zh, stage_en = ("已结束", "closed") if status in FINAL else ("已过审批", "past approval")
    return (
        f"售后单 {case.id} 当前状态为「{STATUS_ZH[status]}」，{stage_zh}，不能再修改{what_zh}"
        f"（{why}）；请按原申请内容推送，或用新的 external_id 发起新的售后 / case {case.id} is "
        f"{status.value}, {stage_en}: its {what_en} can no longer change; resend the original "
        "values, or open a new return request under a new external_id"
    )


async def _reroute(
    session: AsyncSession,
    ctx: Ctx,
    case: Case,
    decision: Decision,
    channel: Actor,
    why: str,
    detail: dict[str, Any],
) -> None:
    """Old tier's cards say superseded, its steps and timers go; the new tier starts."""
    detail["steps"] = [
        {"role": s.role, "state": s.state, "actor": s.actor.name if s.actor else None}
        for s in case.steps
    ]
    session.add(must(fire(case, "reroute", channel, ctx.now(), why=why, detail=detail)))
    await notify.close_cards(session, ctx, case.id, f"已作废：申请已更新（{why}），请勿再处理")
    await timers.cancel_for_case(session, case.id)
    await _step_aside(session, case.steps)
    case.steps.clear()
    await create.route_case(session, ctx, case, decision)


async def _resend(session: AsyncSession, ctx: Ctx, case: Case, why: str) -> None:
    """Same tier: the current step's cards are replaced by ones showing the new request.

    The step row is replaced too (same seq, role, assignee and due time): a click
    names the step its card was sent for, so an old card, showing the old amount,
    can no longer decide.
    """
    step = next((s for s in case.steps if s.state == "pending"), None)
    if step is None:
        return
    await notify.close_cards(
        session, ctx, case.id, f"已作废：申请已更新（{why}），请在新卡片上处理", step_id=step.id
    )
    fresh = ApprovalStep(
        seq=step.seq,
        role=step.role,
        state="waiting",
        assignee=step.assignee,
        opened_at=step.opened_at,
        due_at=step.due_at,
    )
    await _step_aside(session, [step])
    case.steps[case.steps.index(step)] = fresh
    await session.flush()
    await steps.open_step(session, ctx, case, fresh)


async def _step_aside(session: AsyncSession, old: list[ApprovalStep]) -> None:
    """Free the seq numbers of steps about to be replaced, keeping their rows for now.

    Their replacements are then inserted before the old rows are deleted (one
    flush; SQLAlchemy inserts first). Deleting first would let SQLite hand a new
    step the id of a deleted one (max(rowid) + 1), and a superseded card, which
    names its step by id, would decide the new step.
    """
    for step in old:
        step.seq = -step.seq
    await session.flush()
