"""Risk decides a held case: full refund, refund minus a deduction, or rejection.

Risk (or a CS lead, or the ops director) decides; each decision carries a reason
and is confirmed before money moves, and each writes an audit row:

- 全额退款: the click says what it will do (the amount) and the reason the member
  replies with confirms it.
- 驳回退款: likewise (the buyer gets nothing, the case ends rejected).
- 扣款退款: a part from the price list or an amount, and a reason, confirmed on a
  second card (handlers/deduction.py).

For an exchange the release is the reshipment (handlers/exchange.py), not a refund.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from bot.events import Sender
from bot.money import yuan_zh
from handlers import abuse, cs_notice, deduction, disputes, exchange, notify, steps, views
from handlers.approvals import ask, case_or_reply, refuse
from handlers.context import Ctx
from handlers.people import holders, role_zh
from handlers.risk import history_lines
from handlers.workflow import TRANSITIONS, Actor, Refusal, check, fire
from storage.history import customer_history
from storage.models import AuditEvent, Case, Evidence, Member

ACTIONS = frozenset(
    {"resolve_refund", "resolve_reject", "resolve_deduct", "confirm", "discard", "unflag"}
)


async def alert_risk(
    session: AsyncSession,
    ctx: Ctx,
    case: Case,
    inspector: Member,
    outcome: str,
    detail: str,
    incidents: tuple[str, ...],
) -> None:
    """The risk card: the finding, the buyer's history and incidents, the evidence so
    far and a suggested resolution, with the buttons that decide."""
    finding = views.finding_zh(outcome, detail)
    history = incidents
    if case.buyer_ref:
        found = await customer_history(session, case.channel, case.buyer_ref, ctx.now(), case.id)
        # The incidents and the flag first: WeCom shows only the start of a long history.
        lines = sorted(
            history_lines(found, anomalies=False), key=lambda line: not line.startswith("⚠")
        )
        history = (*incidents, *lines)
    customer = await abuse.customer_of(session, case)
    flagged = bool(customer and customer.flagged)
    proofs = list(await session.scalars(select(Evidence).where(Evidence.case_id == case.id)))
    photos = sum(e.kind == "photo" for e in proofs)
    evidence = f"照片 {photos} 张，其他 {len(proofs) - photos} 项（/查单 {case.id}）"
    tip = suggestion(ctx, case, outcome, detail, flagged)
    scripted = await disputes.suggest_for_hold(session, ctx, case, outcome)
    script = f"{scripted[0].title}：{scripted[1]}" if scripted else ""
    await notify.send_cards(
        session,
        ctx,
        await holders(session, "risk"),
        case,
        "risk",
        lambda card_id: views.risk_card(ctx, case, card_id, finding, inspector.name,
                                        suggestion=tip, script=script, history=history,
                                        flagged=flagged, evidence=evidence),
        role="risk",
    )  # fmt: skip
    if scripted is not None:
        await disputes.tell_hold(session, ctx, case, finding, scripted)


def suggestion(ctx: Ctx, case: Case, outcome: str, detail: str, flagged: bool) -> str:
    if case.kind == "exchange":
        return "核实凭证后放行换货或驳回"
    priced = deduction.part_in(ctx, case, detail) if outcome == "missing_parts" else None
    if priced is not None and priced[1] < case.amount_fen:
        part, fen = priced
        return f"扣款退款：扣除{part} {yuan_zh(fen)}，退款 {yuan_zh(case.amount_fen - fen)}"
    if flagged and outcome in ("wrong_item", "empty"):
        return f"驳回退款（买家已标记{abuse.FLAG_LABEL}）"
    return "核实凭证后决定：全额退款、扣款退款或驳回退款"


async def on_action(
    session: AsyncSession,
    ctx: Ctx,
    case_id: str,
    member: Member,
    action: str,
    reply_to: Sender,
    *,
    reason: str = "",
    ask_reason: bool = False,
    card_ref: int | None = None,
) -> None:
    """A risk-card (or confirmation-card) button, or the chat answer it asked for;
    `card_ref` is the clicked card record's step_id (a confirmation: its proposal)."""
    if action == "resolve_deduct":
        await deduction.propose(
            session, ctx, case_id, member, reason, reply_to, ask_reason=ask_reason
        )
    elif action == "confirm":
        await deduction.confirm(session, ctx, case_id, member, reply_to, card_ref)
    elif action == "discard":
        await deduction.discard(session, ctx, case_id, member, reply_to, card_ref)
    elif action == "unflag":
        await unflag(session, ctx, case_id, member, reason, reply_to, ask_reason=ask_reason)
    else:
        await decide(
            session, ctx, case_id, member, action, reply_to, reason=reason, ask_reason=ask_reason
        )


async def decide(
    session: AsyncSession,
    ctx: Ctx,
    case_id: str,
    member: Member,
    action: str,
    reply_to: Sender,
    *,
    reason: str = "",
    ask_reason: bool = False,
) -> None:
    """Full refund (an exchange: reship) or rejection, each with a reason.

    A card click carries no reason: with `ask_reason` the bot says what the decision
    will do and takes the member's next chat message as the reason that confirms it.
    """
    actor = Actor.of(member)
    case = await case_or_reply(session, ctx, case_id, reply_to)
    if case is None:
        return
    reject = action == "resolve_reject"
    transition = action if reject or case.kind != "exchange" else "resolve_exchange"
    refusal = check(case, transition, actor)
    reason = reason.strip()
    if refusal is None and not reason:
        if ask_reason:
            text = _question(case, reject)
            await ask(session, ctx, member, case, None, action, text, reply_to)
            return
        command = "/驳回退款" if reject else "/全额退款"
        refusal = Refusal(f"{views.ACTION_ZH[action]}需要填写原因：{command} {case.id} 原因")
    if refusal is not None:
        await refuse(session, ctx, case, actor, action, refusal.reason, reply_to)
        return
    now = ctx.now()
    if reject:
        refusal = _added(session, fire(case, transition, actor, now, why=reason))
    elif case.kind == "exchange":
        refusal = await exchange.request(session, ctx, case, actor, reason, transition)
    else:
        refusal = await steps.release_refund(
            session, ctx, case, transition, actor, f"风控放行，全额退款：{reason}"
        )
    if refusal is not None:
        await refuse(session, ctx, case, actor, action, refusal.reason, reply_to)
        return
    await deduction.discard_open(session, ctx, case, member)
    label = "放行换货" if transition == "resolve_exchange" else views.ACTION_ZH[action]
    done = f"已由 {member.name} 于 {views.stamp(ctx, now)} {label}"
    await notify.close_cards(session, ctx, case.id, f"{done}：{reason}", kind="risk")
    if reject:
        await notify.channel_event(session, ctx, case, "rejected", reason=reason)
        role = (sorted(TRANSITIONS[action].by & actor.roles) or ["admin"])[0]
        await cs_notice.tell_rejected(
            session, ctx, case, member, role_zh(role), reason, finding=await finding(session, case)
        )
        text = f"已驳回 {case.id} 的退款（原因：{reason}），已通知渠道和客服"
    elif case.kind == "exchange":
        text = exchange.requested_text(case)
    else:
        text = f"已放行 {case.id}，全额退款 {yuan_zh(case.refund_fen or 0)} 已提交渠道"
    await notify.send_text(session, ctx, reply_to, text, case.id)


def _question(case: Case, reject: bool) -> str:
    """A risk card has no text box: say what the decision will do, then ask why."""
    if reject:
        return (
            f"您正在驳回 {case.id} 的退款：买家不会收到 {yuan_zh(case.amount_fen)} 的退款，"
            "售后单将结束为「已驳回」，并通知渠道和客服。\n"
            "请直接回复驳回原因以确认（发送 /取消 放弃）"
        )
    if case.kind == "exchange":
        return (
            f"您正在放行 {case.id} 的换货：将请渠道补发。请直接回复原因以确认（发送 /取消 放弃）"
        )
    return (
        f"您正在为 {case.id} 全额退款 {yuan_zh(case.amount_fen)}：退款将提交渠道。\n"
        "请直接回复原因以确认（发送 /取消 放弃）"
    )


async def finding(session: AsyncSession, case: Case) -> str:
    """The latest inspection result as CS passes it on (e.g. 缺配件（滤网）)."""
    row = await deduction.latest_inspection(session, case)
    if row is None:
        return ""
    return views.finding_zh(row.outcome, row.detail)


async def unflag(
    session: AsyncSession,
    ctx: Ctx,
    case_id: str,
    member: Member,
    reason: str,
    reply_to: Sender,
    *,
    ask_reason: bool = False,
) -> None:
    """解除标记 on the risk card: asks for the reason, which clears the buyer's flag."""
    case = await session.get(Case, case_id)
    if (
        case is not None
        and not reason.strip()
        and ask_reason
        and abuse.CLEARERS & member.role_names
    ):
        buyer = case.buyer_nick or case.buyer_ref
        text = f"请直接回复解除买家 {buyer} 风险标记的原因（发送 /取消 放弃）"
        await ask(session, ctx, member, case, None, "unflag", text, reply_to)
        return
    await abuse.clear_flag(session, ctx, case_id, member, reason, reply_to)


def _added(session: AsyncSession, result: AuditEvent | Refusal) -> Refusal | None:
    if isinstance(result, Refusal):
        return result
    session.add(result)
    return None
