"""What the SLA clock says: reminders (coalesced per person into a digest) and
escalations, written to the outbox in the timer batch's transaction.

A reminder names the assignee ("@王组长"), says how much of the time is used and
what is left, and re-shows the card; when the tick fires several reminders for one
member (or one role chat), they become one digest message, so a burst spends one
message of the platform's per-member and per-robot limits (the outbox's limits,
bot/outbox_limits.py, hold whatever is left). A reminder for an assignee who has
left goes to the role's other holders, and the admins are told. An escalation
sends the case's card, without buttons, to the next role, saying why.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from bot.cards import Card
from bot.money import yuan_zh
from handlers import notify, views
from handlers.context import Ctx
from handlers.effects import Effects, Message
from handlers.people import Person, role_zh
from handlers.sla_plan import format_left
from handlers.sla_policies import STAGE_NOTIFY, STAGE_ZH
from handlers.workflow import SYSTEM_ACTOR, audit
from storage.models import ApprovalStep, Case

DIGEST = "sla.digest"  # session.info key: this batch's reminders, sent by `flush`
SLA_CARD = "sla"  # the card record kind of an escalation copy (closed when the stage ends)


@dataclass(frozen=True, slots=True)
class Reminder:
    to: Person
    case: Case
    line: str
    build: Callable[[int], Card] | None  # the card to show again, if the stage has one
    step: ApprovalStep | None
    chat: str  # the role's WeCom chat id, "" when none


def stage_role(stage: str, step: ApprovalStep | None, notify_role: str) -> str:
    return step.role if step is not None else (notify_role or STAGE_NOTIFY.get(stage, "admin"))


async def who(
    session: AsyncSession, ctx: Ctx, case: Case, step: ApprovalStep | None, role: str
) -> list[Person]:
    """Who is reminded: the step's assignee, else the role's holders. An assignee who
    left (not in the config any more) is replaced by the other holders; admins hear it."""
    roster = await ctx.people.load(session)
    holders = list(roster.holders(role))
    if step is None or step.assignee_id is None:
        return holders
    here = next((p for p in holders if p.id == step.assignee_id), None)
    if here is not None:
        return [here]
    gone = step.assignee.name if step.assignee else "原处理人"
    others = [p for p in holders if p.id != step.assignee_id]
    names = "、".join(p.name for p in others) or "（无人）"
    fx = Effects(ctx.now())
    notify.texts(
        ctx,
        fx,
        roster.holders("admin"),
        f"⚠ {case.id} 的处理人 {gone} 已不在成员名单中，时效提醒已改发给{role_zh(role)}："
        f"{names}。请用 /转交 {case.id} @姓名 重新指定。",
        case.id,
        alert=True,
    )
    await fx.apply(session)
    return others


def card_builder(
    ctx: Ctx, case: Case, step: ApprovalStep | None, stage: str
) -> Callable[[int], Card] | None:
    """The stage's card, built afresh (its buttons signed for the new card record)."""
    if step is not None:
        return lambda card_id: views.approval_card(ctx, case, step, card_id)
    if stage == "inspection":
        return lambda card_id: views.inspection_card(ctx, case, card_id)
    return None


def queue(session: AsyncSession, reminders: list[Reminder]) -> None:
    """Hold this timer's reminders until the batch ends (`flush`)."""
    session.info.setdefault(DIGEST, []).extend(reminders)


async def flush(session: AsyncSession, ctx: Ctx) -> int:
    """Send the batch's reminders: one per member, a digest when a member has several;
    the same per role chat. Returns how many members were reminded."""
    held: list[Reminder] = session.info.pop(DIGEST, [])
    by_member: dict[int, list[Reminder]] = {}
    by_chat: dict[str, list[Reminder]] = {}
    for r in held:
        by_member.setdefault(r.to.id, []).append(r)
        if r.chat:
            by_chat.setdefault(r.chat, []).append(r)
    fx = Effects(ctx.now())
    for group in by_member.values():
        first = group[0]
        if len(group) == 1:
            notify.texts(ctx, fx, [first.to], f"⏰ @{first.to.name} {first.line}", first.case.id)
            if first.build is not None:
                kind = "approval" if first.step is not None else "inspection"
                notify.cards(ctx, fx, [first.to], first.case, kind, first.build, first.step)
            continue
        lines = "\n".join(f"· {r.line}" for r in group)
        text = f"⏰ @{first.to.name} 您有 {len(group)} 个售后单待处理：\n{lines}"
        notify.texts(ctx, fx, [first.to], text)
    if notify.ROLE_CHAT in ctx.platforms:
        for chat, group in by_chat.items():
            seen: dict[str, Reminder] = {r.case.id: r for r in group}
            names = " ".join(sorted({f"@{r.to.name}" for r in group}))
            body = "\n".join(f"· {r.line}" for r in seen.values())
            text = f"⏰ {names} 时效提醒：\n{body}"
            fx.send(Message("text.send", f"{notify.ROLE_CHAT}:{chat}", {"text": text}, None))
    await fx.apply(session)
    return len(by_member)


def reminder_line(
    ctx: Ctx,
    case: Case,
    stage: str,
    role: str,
    fraction: float,
    due: datetime | None,
    remaining: str,
    missed: int,
) -> str:
    """'RC-… 首次审批（客服组长）已用时 50%，时限 12-03 12:30，剩余 2小时'."""
    parts = [f"{case.id} {STAGE_ZH[stage]}（{role_zh(role)}）已用时 {round(fraction * 100)}%"]
    if due is not None:
        now = ctx.now()
        late = format_left(now - due) if now >= due else ""
        when = f"时限 {views.stamp(ctx, due)}"
        parts.append(f"{when}，已超时 {late}" if late else f"{when}，剩余 {remaining}")
    if deadline := views.deadline_text(ctx, case):
        parts.append(deadline)
    if missed > 1:
        parts.append(f"停机期间错过 {missed} 次提醒")
    return "，".join(parts)


def _notice(ctx: Ctx, case: Case, step: ApprovalStep | None, reason: str, card_id: int) -> Card:
    """The escalation copy: the approval card without buttons, or a notice of the case."""
    summary = f"⚠ 升级：{reason}"
    if step is not None:
        card = views.approval_card(ctx, case, step, card_id)
        return replace(card, kind="notice", buttons=(), summary=summary)
    fields = (
        ("订单号", case.order_id),
        ("申请金额", yuan_zh(case.amount_fen)),
        ("原因", views.reason_zh(case)),
    )
    return Card(
        kind="notice",
        title=f"时效升级 · {case.id}",
        case_id=case.id,
        summary=summary,
        fields=fields,
        lines=views.item_lines(case),
    )


async def escalate(
    session: AsyncSession,
    ctx: Ctx,
    case: Case,
    step: ApprovalStep | None,
    to_role: str,
    reason: str,
) -> None:
    """The card to `to_role`'s holders (the admins if nobody holds it), and why."""
    roster = await ctx.people.load(session)
    to = list(roster.holders(to_role)) or list(roster.holders("admin"))
    fx = Effects(ctx.now())
    fx.audit(
        audit(
            case.id,
            SYSTEM_ACTOR,
            "sla_escalate",
            fx.now,
            case.status,
            case.status,
            why=reason,
            detail={"to": to_role},
        )
    )
    notify.cards(
        ctx,
        fx,
        to,
        case,
        SLA_CARD,
        lambda card_id: _notice(ctx, case, step, reason, card_id),
        step,
        role=to_role,
    )
    notify.texts(ctx, fx, to, f"⚠ {case.id} 已升级给{role_zh(to_role)}：{reason}", case.id)
    await fx.apply(session)
