"""Opening approval steps and what follows the last approval.

Shared by intake (routing opens step 1 or auto-approves), approvals (the next
step, or the end of the chain) and transfers.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from sqlalchemy.ext.asyncio import AsyncSession

from handlers import abuse, notify, sla_plan, views
from handlers.context import Ctx
from handlers.effects import Effects
from handlers.people import Recipient, role_zh
from handlers.risk import history_lines
from handlers.workflow import Actor, Refusal, fire, must
from storage.history import customer_history
from storage.models import ApprovalStep, Case

log = logging.getLogger(__name__)


def wants_history(case: Case) -> bool:
    """Whether the case's approval cards show the buyer's history (the director tier)."""
    return "customer_history" in case.attachments and bool(case.buyer_ref)


def opened(
    ctx: Ctx,
    fx: Effects,
    case: Case,
    step: ApprovalStep,
    to: Sequence[Recipient],
    admins: Sequence[Recipient],
    history: tuple[str, ...] = (),
) -> int:
    """Make `step` current and put its approval card in front of `to`; with nobody to
    receive it, tell `admins`. Returns how many platform users get the card."""
    now = fx.now
    step.state = "pending"
    if step.opened_at is None:  # a transfer re-sends the card; the SLA clock keeps running
        step.opened_at = now
        policy = sla_plan.policy_of(ctx, case, sla_plan.approval_stage(step))
        step.due_at = sla_plan.due_at(ctx, case, policy, now)
    case.current_step = step.seq
    sent = notify.cards(
        ctx,
        fx,
        to,
        case,
        "approval",
        lambda card_id: views.approval_card(ctx, case, step, card_id, history),
        step,
        role=step.role,
    )
    if sent == 0:
        log.warning("case %s: nobody can receive the %s card", case.id, step.role)
        notify.texts(
            ctx,
            fx,
            admins,
            f"⚠ {case.id} 需要「{role_zh(step.role)}」审批，但没有成员能收到卡片。"
            "请在配置中添加该角色的成员（含企业微信 userid）并重启，卡片会自动补发。",
            case.id,
        )
    return sent


async def open_step(
    session: AsyncSession,
    ctx: Ctx,
    case: Case,
    step: ApprovalStep,
    to: Sequence[Recipient] | None = None,
) -> int:
    """`opened`, for the step's assignee or its role's holders, in the caller's session."""
    roster = await ctx.people.load(session)
    if to is None:
        to = [step.assignee] if step.assignee else roster.holders(step.role)
    fx = Effects(ctx.now())
    history: tuple[str, ...] = ()
    if wants_history(case):
        found = await customer_history(session, case.channel, case.buyer_ref, fx.now, case.id)
        history = history_lines(found)
    else:
        history = await abuse.flag_lines(session, case)
    sent = opened(ctx, fx, case, step, to, roster.holders("admin"), history)
    await fx.apply(session)
    return sent


def approved(ctx: Ctx, fx: Effects, case: Case) -> None:
    """Approved: refund-only cases release the refund, and returns whose tier releases
    on approval (warehouse.toml [release]); the rest wait for the parcel."""
    fx.send(notify.event_message(case, "approved"))
    system = Actor("system", "system")
    if case.kind == "refund_only":
        released(fx, case, "release_refund", system, "仅退款，审批通过")
    elif ctx.settings.warehouse.release_on(case) == "approval":
        released(fx, case, "release_refund", system, "档位规则：审批通过即退款")
    else:
        fx.audit(must(fire(case, "await_return", system, fx.now, why="等待买家寄回")))


async def after_approval(session: AsyncSession, ctx: Ctx, case: Case) -> None:
    """`approved`, in the caller's session."""
    fx = Effects(ctx.now())
    approved(ctx, fx, case)
    await fx.apply(session)


def released(
    fx: Effects,
    case: Case,
    transition: str,
    actor: Actor,
    why: str,
    deduction_fen: int = 0,
    step_role: str | None = None,
) -> Refusal | None:
    """Move to refund_pending and send the refund command to the channel."""
    result = fire(
        case,
        transition,
        actor,
        fx.now,
        why=why,
        step_role=step_role,
        detail={"deduction_fen": deduction_fen} if deduction_fen else None,
    )
    if isinstance(result, Refusal):
        return result
    fx.audit(result)
    case.deduction_fen = deduction_fen
    case.refund_fen = max(case.amount_fen - deduction_fen, 0)
    fx.send(notify.refund_message(case))
    return None


async def release_refund(
    session: AsyncSession,
    ctx: Ctx,
    case: Case,
    transition: str,
    actor: Actor,
    why: str,
    deduction_fen: int = 0,
    step_role: str | None = None,
) -> Refusal | None:
    """`released`, in the caller's session."""
    fx = Effects(ctx.now())
    refusal = released(fx, case, transition, actor, why, deduction_fen, step_role)
    await fx.apply(session)
    return refusal
