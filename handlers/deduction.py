"""Refund minus a deduction: risk names a part from the price list (warehouse.toml,
e.g. 滤网 ¥35.00) or an amount, and a reason; a second card spells out the requested,
deducted and refunded amounts, and only its 确认 releases the partial refund.

A deduction is always less than the paid amount. Each confirmation card names its
proposal (the card record's step_id), so a card of a proposal replaced since can
never confirm the newer amount, and a second 确认 finds nothing left to confirm.
"""

from __future__ import annotations

import re

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from bot.events import Sender
from bot.money import parse_yuan, yuan_zh
from handlers import notify, steps, views
from handlers.approvals import ask, case_or_reply, refuse
from handlers.context import Ctx
from handlers.workflow import Actor, Refusal, check
from storage.models import Case, Inspection, Member, Resolution

_AMOUNT = re.compile(r"[¥￥]?(\d{1,9}(?:\.\d{1,2})?)元?")


def part_in(ctx: Ctx, case: Case, detail: str) -> tuple[str, int] | None:
    """The price-list part the inspection detail names, if any."""
    for part, fen in ctx.settings.warehouse.parts(case).items():
        if part in detail:
            return part, fen
    return None


def parse_deduction(ctx: Ctx, case: Case, text: str) -> tuple[int, str, str] | Refusal:
    """ "滤网 缺少滤网" or "35.00 原因" -> (fen, what, reason), or why not."""
    head, rest = (text.split(None, 1) + ["", ""])[:2]  # any blank, the full-width one too
    parts = ctx.settings.warehouse.parts(case)
    listed = "、".join(f"{p} {yuan_zh(f)}" for p, f in parts.items()) or "无价目"
    if head in parts:
        fen, what = parts[head], head
    elif (m := _AMOUNT.fullmatch(head)) is not None:
        fen, what = parse_yuan(m.group(1), allow_zero=True), "手工填写"
        if fen == 0:
            return Refusal("扣款金额必须大于 0；不扣款请选择「全额退款」")
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
    await discard_open(session, ctx, case, member)
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
    await discard_open(session, ctx, case, member)
    await notify.send_text(
        session, ctx, reply_to, f"已取消 {case.id} 的扣款，售后单仍在等待风控处理", case.id
    )


async def discard_open(session: AsyncSession, ctx: Ctx, case: Case, member: Member) -> None:
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
