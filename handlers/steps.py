"""Opening approval steps and what follows the last approval.

Shared by intake (routing opens step 1 or auto-approves), approvals (the next
step, or the end of the chain) and transfers.
"""

from __future__ import annotations

import logging

from sqlalchemy.ext.asyncio import AsyncSession

from handlers import notify, views
from handlers.context import Ctx
from handlers.people import holders, role_zh
from handlers.risk import history_lines
from handlers.workdays import add_business_hours
from handlers.workflow import Actor, Refusal, fire, must
from storage.history import customer_history
from storage.models import ApprovalStep, Case, Member

log = logging.getLogger(__name__)
DEFAULT_REVIEW_HOURS = 4.0


def due_hours(ctx: Ctx, case: Case) -> float:
    """Business hours the case's SLA policy gives an approval step."""
    policy = ctx.settings.sla.get(case.sla_policy)
    return policy.business_hours if policy is not None else DEFAULT_REVIEW_HOURS


async def open_step(
    session: AsyncSession, ctx: Ctx, case: Case, step: ApprovalStep, to: list[Member] | None = None
) -> int:
    """Make `step` current and put its approval card in front of whoever must decide."""
    now = ctx.now()
    step.state = "pending"
    if step.opened_at is None:  # a transfer re-sends the card; the SLA clock keeps running
        step.opened_at = now
        step.due_at = add_business_hours(
            now, due_hours(ctx, case), ctx.settings.calendar, ctx.zone
        )
    case.current_step = step.seq
    if to is None:
        to = [step.assignee] if step.assignee else await holders(session, step.role)
    history: tuple[str, ...] = ()
    if "customer_history" in case.attachments and case.buyer_ref:
        found = await customer_history(session, case.channel, case.buyer_ref, now, case.id)
        history = history_lines(found)
    sent = await notify.send_cards(
        session,
        ctx,
        to,
        case,
        "approval",
        lambda card_id: views.approval_card(ctx, case, step, card_id, history),
        step_id=step.id,
        role=step.role,
    )
    if sent == 0:
        log.warning("case %s: nobody can receive the %s card", case.id, step.role)
        await notify.tell(
            session,
            ctx,
            await holders(session, "admin"),
            f"⚠ {case.id} 需要「{role_zh(step.role)}」审批，但没有成员能收到卡片。"
            "请在配置中添加该角色的成员（含企业微信 userid）并重启，卡片会自动补发。",
            case.id,
        )
    return sent


async def after_approval(session: AsyncSession, ctx: Ctx, case: Case) -> None:
    """Approved: refund-only cases release the refund; the rest wait for the parcel."""
    await notify.channel_event(session, ctx, case, "approved")
    system = Actor("system", "system")
    if case.kind == "refund_only":
        await release_refund(session, ctx, case, "release_refund", system, "仅退款，审批通过")
    else:
        session.add(must(fire(case, "await_return", system, ctx.now(), why="等待买家寄回")))


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
    """Move to refund_pending and enqueue the refund command for the channel."""
    result = fire(
        case,
        transition,
        actor,
        ctx.now(),
        why=why,
        step_role=step_role,
        detail={"deduction_fen": deduction_fen} if deduction_fen else None,
    )
    if isinstance(result, Refusal):
        return result
    session.add(result)
    case.deduction_fen = deduction_fen
    case.refund_fen = max(case.amount_fen - deduction_fen, 0)
    await notify.refund(session, ctx, case)
    return None
