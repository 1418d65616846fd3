"""Approve / reject / transfer, from a card click or a chat command.

The case row is locked (FOR UPDATE on PostgreSQL, the writer lock on SQLite)
and versioned, so when two approvers act at once exactly one decides and the
other is told who did and when.
"""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import Select, event, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session, SessionTransaction, selectinload

from bot.events import Sender
from handlers import cs_notice, notify, steps, views
from handlers.context import Ctx
from handlers.people import holders, member_named, role_zh
from handlers.workflow import STATUS_ZH, Actor, Refusal, Status, audit, check, fire, must
from storage.models import ApprovalStep, CardRecord, Case, Member, PendingReply

LOCKED = "approvals.locked"  # session.info key: the cases `load_case` locked, by id


@event.listens_for(Session, "after_transaction_end")
def _forget_locked(session: Session, transaction: SessionTransaction) -> None:
    """A savepoint that ends may have rolled back (and released) its locks, and the
    transaction's end releases all: forget them (a flush's inner end keeps them)."""
    if transaction.nested or transaction.parent is None:
        session.info.pop(LOCKED, None)


async def load_case(session: AsyncSession, ctx: Ctx, case_id: str) -> Case | None:
    """The case with its items and steps, locked for the rest of the transaction.

    `populate_existing`: a copy the session read earlier without the lock (a scan's
    lookup) is refreshed with what the lock waited for, not kept stale. A case this
    transaction locked already is returned as it is (a click locks the case, then
    decides on it): nobody else can have changed it since.
    """
    locked: dict[str, Case] = session.info.setdefault(LOCKED, {})
    if case_id not in locked:
        case = (await session.scalars(_locking(ctx).where(Case.id == case_id))).first()
        if case is None:
            return None
        locked[case_id] = case
    return locked[case_id]


async def lock_cases(session: AsyncSession, ctx: Ctx, case_ids: Iterable[str]) -> list[Case]:
    """`load_case` for several cases in one query, locked in id order; the ones found."""
    locked: dict[str, Case] = session.info.setdefault(LOCKED, {})
    wanted = sorted(set(case_ids))
    missing = [i for i in wanted if i not in locked]
    if missing:
        query = _locking(ctx).where(Case.id.in_(missing)).order_by(Case.id)
        for case in await session.scalars(query):
            locked[case.id] = case
    return [locked[i] for i in wanted if i in locked]


def _locking(ctx: Ctx) -> Select[Case]:
    """Cases with their items and steps, locked, refreshing what the session held."""
    return (
        select(Case)
        .options(selectinload(Case.items), selectinload(Case.steps))
        .with_for_update(**ctx.db.for_update())
        .execution_options(populate_existing=True)
    )


async def case_or_reply(
    session: AsyncSession, ctx: Ctx, case_id: str, reply_to: Sender
) -> Case | None:
    """`load_case`, telling the member when the id matches nothing."""
    case = await load_case(session, ctx, case_id)
    if case is None:
        await notify.send_text(session, ctx, reply_to, f"未找到售后单 {case_id}")
    return case


def stale_text(ctx: Ctx, case: Case, step_id: int | None = None) -> str:
    """'已由 X 于 MM-DD HH:MM 同意' for the step the card belonged to (or the latest decision),
    worded like the closed card's status line."""
    decided = [
        s for s in case.steps if s.decided_at is not None and (step_id is None or s.id == step_id)
    ]
    if decided:
        last = max(decided, key=lambda s: s.decided_at or s.opened_at or case.created_at)
        who = last.actor.name if last.actor else "系统"
        when = views.stamp(ctx, last.decided_at or case.updated_at)
        verb = {"approved": "同意", "rejected": "驳回"}.get(last.state, "处理")
        return f"已由 {who} 于 {when} {verb}"
    return f"售后单 {case.id} 当前状态为「{STATUS_ZH[Status(case.status)]}」，无需审批"


async def refuse(
    session: AsyncSession,
    ctx: Ctx,
    case: Case | None,
    actor: Actor,
    action: str,
    reason: str,
    reply_to: Sender,
) -> None:
    """A polite reply and an audit row; the case itself is untouched."""
    status = case.status if case else ""
    session.add(
        audit(
            case.id if case else None,
            actor,
            f"refused:{action}",
            ctx.now(),
            status,
            status,
            why=reason,
        )
    )
    await notify.send_text(session, ctx, reply_to, reason, case.id if case else None)


async def decide(
    session: AsyncSession,
    ctx: Ctx,
    case_id: str,
    member: Member,
    action: str,
    reply_to: Sender,
    *,
    reason: str = "",
    target: str = "",
    step_id: int | None = None,
) -> None:
    """Apply `action` (approve | reject | transfer) to the case's current step."""
    actor = Actor.of(member)
    case = await case_or_reply(session, ctx, case_id, reply_to)
    if case is None:
        return
    step = next((s for s in case.steps if s.state == "pending"), None)
    if step is None or (step_id is not None and step.id != step_id):
        await notify.send_text(session, ctx, reply_to, stale_text(ctx, case, step_id), case.id)
        return
    if step.assignee_id is not None and step.assignee_id != member.id and not actor.is_admin:
        who = step.assignee.name if step.assignee else "他人"
        await refuse(session, ctx, case, actor, action, f"此审批已转交给 {who}", reply_to)
        return
    if action == "approve":
        await _approve(session, ctx, case, step, member, actor, reply_to)
    elif action == "reject":
        await _reject(
            session, ctx, case, step, member, actor, reason.strip(), reply_to, step_id is not None
        )
    elif action == "transfer":
        await _transfer(
            session, ctx, case, step, member, actor, target.strip(), reply_to, step_id is not None
        )
    else:
        await refuse(session, ctx, case, actor, action, f"未知操作 {action}", reply_to)


async def _approve(
    session: AsyncSession,
    ctx: Ctx,
    case: Case,
    step: ApprovalStep,
    member: Member,
    actor: Actor,
    reply_to: Sender,
) -> None:
    last = step.seq == len(case.steps)
    transition = "approve" if last else "approve_step"
    refusal = check(case, transition, actor, step.role)
    if refusal is None and any(
        s.actor_id == member.id and s.state == "approved" for s in case.steps
    ):
        # Four eyes: a multi-step chain needs as many people as steps, even when one
        # member holds the roles of two of them.
        refusal = Refusal(f"您已审批过 {case.id} 的上一步，本步需由其他{role_zh(step.role)}审批")
    if refusal is not None:
        await refuse(session, ctx, case, actor, "approve", refusal.reason, reply_to)
        return
    now = ctx.now()
    session.add(
        must(fire(case, transition, actor, now, step_role=step.role, detail={"step": step.seq}))
    )
    step.state, step.actor_id, step.decided_at = "approved", member.id, now
    step.actor = member  # the next step's card names who approved this one
    await notify.close_cards(
        session,
        ctx,
        case.id,
        f"已由 {member.name} 于 {views.stamp(ctx, now)} 同意",
        step_id=step.id,
    )
    if last:
        await steps.after_approval(session, ctx, case)
        await notify.send_text(session, ctx, reply_to, f"已同意 {case.id}", case.id)
    else:
        following = case.steps[step.seq]
        await steps.open_step(session, ctx, case, following)
        await notify.send_text(
            session, ctx, reply_to, f"已同意 {case.id}，转{role_zh(following.role)}审批", case.id
        )


async def ask(
    session: AsyncSession,
    ctx: Ctx,
    member: Member,
    case: Case,
    step_id: int | None,
    action: str,
    question: str,
    reply_to: Sender,
) -> None:
    """Ask in chat; the member's next plain message completes `action` on the case
    (commands.py hands it to actions.route, as if the card had carried the answer)."""
    await session.merge(
        PendingReply(
            member_id=member.id,
            case_id=case.id,
            step_id=step_id,
            action=action,
            asked_at=ctx.now(),
        )
    )
    await notify.send_text(session, ctx, reply_to, question, case.id)


async def _reject(
    session: AsyncSession,
    ctx: Ctx,
    case: Case,
    step: ApprovalStep,
    member: Member,
    actor: Actor,
    reason: str,
    reply_to: Sender,
    from_card: bool,
) -> None:
    refusal = check(case, "reject", actor, step.role)
    if refusal is None and not reason:
        if from_card:  # a card has no text box: ask, and take the next chat message
            question = f"请直接回复驳回 {case.id} 的原因（发送 /取消 放弃）"
            await ask(session, ctx, member, case, step.id, "reject", question, reply_to)
            return
        refusal = Refusal(f"驳回需要填写原因：/驳回 {case.id} 原因")
    if refusal is not None:
        await refuse(session, ctx, case, actor, "reject", refusal.reason, reply_to)
        return
    now = ctx.now()
    session.add(must(fire(case, "reject", actor, now, step_role=step.role, why=reason)))
    step.state, step.actor_id, step.decided_at, step.reason = "rejected", member.id, now, reason
    step.actor = member
    await notify.close_cards(
        session, ctx, case.id, f"已由 {member.name} 于 {views.stamp(ctx, now)} 驳回：{reason}"
    )
    await notify.channel_event(session, ctx, case, "rejected", reason=reason)
    await cs_notice.tell_rejected(session, ctx, case, member, role_zh(step.role), reason)
    await notify.send_text(session, ctx, reply_to, f"已驳回 {case.id}", case.id)


async def _transfer(
    session: AsyncSession,
    ctx: Ctx,
    case: Case,
    step: ApprovalStep,
    member: Member,
    actor: Actor,
    target: str,
    reply_to: Sender,
    from_card: bool,
) -> None:
    refusal = check(case, "transfer", actor, step.role)
    to = await member_named(session, target) if target else None
    if refusal is None and not target and from_card:
        others = [m.name for m in await holders(session, step.role) if m.id != member.id]
        if others:
            question = (
                f"可转交给：{'、'.join(others)}。请直接回复姓名，"
                f"将 {case.id} 转交（发送 /取消 放弃）"
            )
            await ask(session, ctx, member, case, step.id, "transfer", question, reply_to)
            return
    if refusal is None:
        if to is None:
            refusal = Refusal(f"请指定转交对象：/转交 {case.id} @姓名")
        elif to.id == member.id:
            refusal = Refusal("不能转交给自己")
        elif step.role not in to.role_names:
            refusal = Refusal(f"{to.name} 没有「{role_zh(step.role)}」角色，不能转交")
    if refusal is not None or to is None:
        await refuse(
            session,
            ctx,
            case,
            actor,
            "transfer",
            refusal.reason if refusal else "转交失败",
            reply_to,
        )
        return
    now = ctx.now()
    session.add(
        must(fire(case, "transfer", actor, now, step_role=step.role, detail={"to": to.name}))
    )
    step.assignee_id = to.id
    step.assignee = to
    await notify.close_cards(
        session,
        ctx,
        case.id,
        f"已由 {member.name} 于 {views.stamp(ctx, now)} 转交给 {to.name}",
        step_id=step.id,
    )
    await steps.open_step(session, ctx, case, step, to=[to])
    await notify.send_text(session, ctx, reply_to, f"已将 {case.id} 转交给 {to.name}", case.id)


async def resend_unseen(session: AsyncSession, ctx: Ctx) -> int:
    """At start-up: pending steps whose card reached nobody get it now (a member
    holding the role, or a platform, may have been added since). Returns how many."""
    shown = select(CardRecord.id).where(CardRecord.step_id == ApprovalStep.id).exists()
    orphans = list(
        await session.scalars(select(ApprovalStep).where(ApprovalStep.state == "pending", ~shown))
    )
    reached = 0
    for step in orphans:
        case = await load_case(session, ctx, step.case_id)
        if case is not None and await steps.open_step(session, ctx, case, step) > 0:
            reached += 1
    return reached
