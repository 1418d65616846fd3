"""Risk decides a held case: full refund, refund minus a deduction, or rejection.

Risk (or a CS lead, or the ops director) decides; each decision carries a reason
and is confirmed before money moves, and each writes an audit row:

- 全额退款: the click says what it will do (the amount) and the reason the member
  replies with confirms it.
- 驳回退款: likewise (the buyer gets nothing, the case ends rejected).
- 扣款退款: the member names a part from the price list (warehouse.toml, e.g.
  滤网 ¥35.00) or an amount, and a reason; a second card spells out requested,
  deducted and refunded amounts, and only its 确认 releases the partial refund.
  A deduction is never the paid amount or more.

For an exchange the release is the reshipment (handlers/exchange.py), not a refund.
"""

from __future__ import annotations

import re

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from bot.events import Sender
from bot.money import parse_yuan, yuan_zh
from handlers import abuse, cs_notice, exchange, notify, steps, views
from handlers.approvals import ask, case_or_reply, refuse
from handlers.context import Ctx
from handlers.people import holders, role_zh
from handlers.risk import history_lines
from handlers.workflow import TRANSITIONS, Actor, Refusal, check, fire
from storage.history import customer_history
from storage.models import AuditEvent, Case, Evidence, Inspection, Member, Resolution

ACTIONS = frozenset(
    {"resolve_refund", "resolve_reject", "resolve_deduct", "confirm", "discard", "unflag"}
)
_AMOUNT = re.compile(r"[¥￥]?(\d{1,9}(?:\.\d{1,2})?)元?")


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
    label = views.INSPECTION_ZH[outcome]
    finding = f"{label}（{detail}）" if detail else label
    history = incidents
    if case.buyer_ref:
        found = await customer_history(session, case.channel, case.buyer_ref, ctx.now(), case.id)
        # The incidents and the flag first: WeCom shows only the start of a long history.
        lines = sorted(history_lines(found), key=lambda line: not line.startswith("⚠"))
        history = (*incidents, *lines)
    customer = await abuse.customer_of(session, case)
    flagged = bool(customer and customer.flagged)
    proofs = list(await session.scalars(select(Evidence).where(Evidence.case_id == case.id)))
    photos = sum(e.kind == "photo" for e in proofs)
    evidence = f"照片 {photos} 张，其他 {len(proofs) - photos} 项（/查单 {case.id}）"
    tip = suggestion(ctx, case, outcome, detail, flagged)
    await notify.send_cards(
        session,
        ctx,
        await holders(session, "risk"),
        case,
        "risk",
        lambda card_id: views.risk_card(ctx, case, card_id, finding, inspector.name,
                                        suggestion=tip, history=history, flagged=flagged,
                                        evidence=evidence),
        role="risk",
    )  # fmt: skip


def part_in(ctx: Ctx, case: Case, detail: str) -> tuple[str, int] | None:
    """The price-list part the inspection detail names, if any."""
    for part, fen in ctx.settings.warehouse.parts(case).items():
        if part in detail:
            return part, fen
    return None


def suggestion(ctx: Ctx, case: Case, outcome: str, detail: str, flagged: bool) -> str:
    if case.kind == "exchange":
        return "核实凭证后放行换货或驳回"
    priced = part_in(ctx, case, detail) if outcome == "missing_parts" else None
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
        await propose(session, ctx, case_id, member, reason, reply_to, ask_reason=ask_reason)
    elif action == "confirm":
        await confirm(session, ctx, case_id, member, reply_to, card_ref)
    elif action == "discard":
        await discard(session, ctx, case_id, member, reply_to, card_ref)
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
    await _discard_open(session, ctx, case, member)
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


def parse_deduction(ctx: Ctx, case: Case, text: str) -> tuple[int, str, str] | Refusal:
    """ "滤网 缺少滤网" or "35.00 原因" -> (fen, what, reason), or why not."""
    head, _, rest = text.strip().partition(" ")
    parts = ctx.settings.warehouse.parts(case)
    listed = "、".join(f"{p} {yuan_zh(f)}" for p, f in parts.items()) or "无价目"
    if head in parts:
        fen, what = parts[head], head
    elif (m := _AMOUNT.fullmatch(head)) is not None and m.group(1).strip("0.") != "":
        fen, what = parse_yuan(m.group(1)), "手工填写"
    else:
        return Refusal(f"未知配件「{head}」。可选：{listed}；或直接填写金额，如：35.00 原因")
    if fen >= case.amount_fen:
        return Refusal(
            f"扣款 {yuan_zh(fen)} 不能达到或超过实付金额 {yuan_zh(case.amount_fen)}；"
            "全部不退请选择「驳回退款」"
        )
    reason = rest.strip()
    if not reason:
        return Refusal(f"扣款退款需要填写原因，例如：{head} 寄回时缺少{what}")
    return fen, what, reason[:500]


async def propose(
    session: AsyncSession,
    ctx: Ctx,
    case_id: str,
    member: Member,
    text: str,
    reply_to: Sender,
    *,
    ask_reason: bool = False,
) -> None:
    """A deduction named and explained: the confirmation card, no money yet."""
    actor = Actor.of(member)
    case = await case_or_reply(session, ctx, case_id, reply_to)
    if case is None:
        return
    refusal = check(case, "resolve_deduct", actor)
    if refusal is None and case.kind == "exchange":
        refusal = Refusal("换货单不能扣款退款：请选择放行换货或驳回")
    if refusal is None and not text.strip():
        if ask_reason:
            await ask(session, ctx, member, case, None, "resolve_deduct",
                      await _deduct_question(session, ctx, case), reply_to)  # fmt: skip
            return
        refusal = Refusal(f"用法：/扣款退款 {case.id} 配件或金额 原因")
    parsed = parse_deduction(ctx, case, text) if refusal is None else refusal
    if isinstance(parsed, Refusal):
        await refuse(session, ctx, case, actor, "resolve_deduct", parsed.reason, reply_to)
        return
    fen, what, reason = parsed
    now = ctx.now()
    await _discard_open(session, ctx, case, member)
    proposal = Resolution(
        case_id=case.id, deduction_fen=fen, part="" if what == "手工填写" else what,
        reason=reason, state="proposed", proposed_by=member.name, proposed_at=now, decided_by="",
    )  # fmt: skip
    session.add(proposal)
    await session.flush()
    # The confirmation card names its proposal in the card record's step_id, so a card
    # of a proposal replaced since can never confirm the newer amount.
    await notify.send_cards(
        session,
        ctx,
        [member],
        case,
        "confirm",
        lambda card_id: views.confirm_card(ctx, case, card_id, fen, what, reason),
        proposal.id,
    )
    await notify.send_text(
        session,
        ctx,
        reply_to,
        f"请在确认卡片上核对：{case.id} 扣除 {yuan_zh(fen)}（{what}），"
        f"退款 {yuan_zh(case.amount_fen - fen)}，点击「确认扣款退款」后提交渠道",
        case.id,
    )


async def _deduct_question(session: AsyncSession, ctx: Ctx, case: Case) -> str:
    parts = ctx.settings.warehouse.parts(case)
    listed = "、".join(f"{p} {yuan_zh(f)}" for p, f in parts.items())
    latest = await latest_inspection(session, case)
    priced = part_in(ctx, case, latest.detail) if latest is not None else None
    example = f"{priced[0]} 寄回时缺少{priced[0]}" if priced else "35.00 配件缺失"
    return (
        f"{case.id} 扣款退款（实付 {yuan_zh(case.amount_fen)}）：请回复扣款项和原因，"
        f"例如「{example}」。{'价目：' + listed + '；' if listed else ''}也可直接填写金额。"
        "（发送 /取消 放弃）"
    )


async def open_resolution(session: AsyncSession, case: Case) -> Resolution | None:
    """The deduction waiting for its confirmation, if any (the newest)."""
    found = await session.scalars(
        select(Resolution)
        .where(Resolution.case_id == case.id, Resolution.state == "proposed")
        .order_by(Resolution.id.desc())
        .limit(1)
    )
    return found.first()


async def confirm(
    session: AsyncSession,
    ctx: Ctx,
    case_id: str,
    member: Member,
    reply_to: Sender,
    proposal_id: int | None,
) -> None:
    """The confirmation card's 确认: the partial refund leaves, exactly once."""
    actor = Actor.of(member)
    case = await case_or_reply(session, ctx, case_id, reply_to)
    if case is None:
        return
    proposal = await open_resolution(session, case)
    if proposal is not None and proposal.id != proposal_id:
        proposal = None  # this card's proposal was replaced by a newer one
    refusal = check(case, "resolve_deduct", actor) if proposal else None
    if proposal is None:  # confirmed (a double click), discarded, or never proposed
        refusal = Refusal(f"{case.id} 没有待确认的扣款（已确认或已取消），无需重复操作")
    if refusal is not None or proposal is None:
        reason = refusal.reason if refusal else "没有待确认的扣款"
        await refuse(session, ctx, case, actor, "confirm", reason, reply_to)
        return
    what = proposal.part or "手工填写"
    why = f"扣款退款：扣除{what} {yuan_zh(proposal.deduction_fen)}；{proposal.reason}"
    refusal = await steps.release_refund(
        session, ctx, case, "resolve_deduct", actor, why, deduction_fen=proposal.deduction_fen
    )
    if refusal is not None:
        await refuse(session, ctx, case, actor, "confirm", refusal.reason, reply_to)
        return
    now = ctx.now()
    proposal.state, proposal.decided_by, proposal.decided_at = "confirmed", member.name, now
    amount = yuan_zh(proposal.deduction_fen)
    done = f"已由 {member.name} 于 {views.stamp(ctx, now)} 扣款退款：扣除{what} {amount}"
    await notify.close_cards(session, ctx, case.id, done, kind="risk")
    await notify.close_cards(session, ctx, case.id, done, kind="confirm")
    await notify.send_text(
        session,
        ctx,
        reply_to,
        f"已确认 {case.id}：扣除 {yuan_zh(case.deduction_fen)}（{what}），"
        f"退款 {yuan_zh(case.refund_fen or 0)} 已提交渠道",
        case.id,
    )


async def discard(
    session: AsyncSession,
    ctx: Ctx,
    case_id: str,
    member: Member,
    reply_to: Sender,
    proposal_id: int | None,
) -> None:
    """The confirmation card's 取消: its proposal is dropped, the case stays on hold."""
    case = await case_or_reply(session, ctx, case_id, reply_to)
    if case is None:
        return
    proposal = await open_resolution(session, case)
    if proposal is None or proposal.id != proposal_id:
        await notify.send_text(session, ctx, reply_to, f"{case.id} 没有待确认的扣款", case.id)
        return
    await _discard_open(session, ctx, case, member)
    await notify.send_text(
        session, ctx, reply_to, f"已取消 {case.id} 的扣款，售后单仍在等待风控处理", case.id
    )


async def _discard_open(session: AsyncSession, ctx: Ctx, case: Case, member: Member) -> None:
    """Drop proposals still waiting (a new one, or another decision, replaces them)."""
    now = ctx.now()
    result = await session.execute(
        update(Resolution)
        .where(Resolution.case_id == case.id, Resolution.state == "proposed")
        .values(state="discarded", decided_by=member.name, decided_at=now)
        .execution_options(synchronize_session=False)
    )
    if getattr(result, "rowcount", 0):
        done = f"已由 {member.name} 于 {views.stamp(ctx, now)} 取消扣款"
        await notify.close_cards(session, ctx, case.id, done, kind="confirm")


async def latest_inspection(session: AsyncSession, case: Case) -> Inspection | None:
    found = await session.scalars(
        select(Inspection)
        .where(Inspection.case_id == case.id)
        .order_by(Inspection.id.desc())
        .limit(1)
    )
    return found.first()


async def finding(session: AsyncSession, case: Case) -> str:
    """The latest inspection result as CS passes it on (e.g. 缺配件（滤网）)."""
    row = await latest_inspection(session, case)
    if row is None:
        return ""
    label = views.INSPECTION_ZH.get(row.outcome, row.outcome)
    return f"{label}（{row.detail}）" if row.detail else label


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
