"""The inspection result: 完好 / 破损 / 缺配件 / 错发调包 / 空包, and what follows it.

Anything but 完好 first asks which part or what damage (a preset list per SKU
category from warehouse.toml, or free text; the member's next chat message is the
answer) and invites photos, which the evidence window attaches to the case in
hand. Then the outcome rules ([outcomes]) decide: release the refund (an exchange:
request the reshipment), hold it for risk, or reject it. Every result is stored as
an inspection row, from which the buyer's anomalies are counted for the abuse flag.
"""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from bot.events import Sender
from bot.money import yuan_zh
from handlers import abuse, cs_notice, exchange, notify, release, resolve, steps, views
from handlers.approvals import ask, case_or_reply, refuse
from handlers.context import Ctx
from handlers.people import role_zh
from handlers.warehouse_rules import ANOMALIES
from handlers.workflow import Actor, Refusal, check, fire
from storage import timers
from storage.models import Case, Inspection, Member

ASKS = {
    "damaged": "破损情况",
    "missing_parts": "缺少的配件",
    "wrong_item": "收到的实际商品",
    "empty": "包裹情况",
}


async def send_card(session: AsyncSession, ctx: Ctx, member: Member, case: Case) -> None:
    """The inspection card for the member who scanned the parcel (with the buyer's flag)."""
    flags = await abuse.flag_lines(session, case)
    await notify.send_cards(
        session,
        ctx,
        [member],
        case,
        "inspection",
        lambda card_id: views.inspection_card(ctx, case, card_id, flags),
    )


def question(ctx: Ctx, case: Case, outcome: str) -> str:
    presets = ctx.settings.warehouse.presets(case, outcome)
    choices = f"可选：{'、'.join(presets)}，或直接输入说明" if presets else "请直接输入说明"
    label = views.INSPECTION_ZH[outcome]
    return (
        f"{case.id} 验货「{label}」：请回复{ASKS[outcome]}（{choices}）。"
        "随后可直接发送照片作为凭证（发送 /取消 放弃）"
    )


async def inspect(
    session: AsyncSession,
    ctx: Ctx,
    case_id: str,
    member: Member,
    outcome: str,
    reply_to: Sender,
    *,
    detail: str = "",
) -> None:
    """Record the result; an anomaly without its detail asks for it first."""
    actor = Actor.of(member)
    case = await case_or_reply(session, ctx, case_id, reply_to)
    if case is None:
        return
    early = await release.released_before_inspection(session, case)
    refusal = _may(case, actor, early)
    if refusal is not None and not early and release.released_after_receipt(case):
        refusal = release.refusal_after_release(case)
    detail = detail.strip()[:200]
    if refusal is None and outcome in ANOMALIES and not detail:
        await ask(
            session, ctx, member, case, None, outcome, question(ctx, case, outcome), reply_to
        )
        return
    if refusal is not None:
        await refuse(session, ctx, case, actor, outcome, refusal.reason, reply_to)
        return
    label = views.INSPECTION_ZH[outcome]
    shown = f"{label}（{detail}）" if detail else label
    now = ctx.now()
    session.add(
        Inspection(case_id=case.id, channel=case.channel, buyer_ref=case.buyer_ref,
                   outcome=outcome, detail=detail, inspector=member.name, at=now)
    )  # fmt: skip
    await session.flush()
    history = await abuse.after_incident(session, ctx, case, outcome) if outcome != "ok" else ()
    await notify.close_cards(
        session, ctx, case.id, f"已由 {member.name} 于 {views.stamp(ctx, now)} 验货：{shown}",
        kind="inspection",
    )  # fmt: skip
    if early:
        await release.inspected_after_release(
            session, ctx, case, member, outcome, shown, history, reply_to
        )
        return
    follows = ctx.settings.warehouse.follows(outcome)
    if follows == "hold":
        await _hold(session, ctx, case, member, outcome, detail, shown, history, reply_to)
    elif follows == "reject":
        await _reject(session, ctx, case, member, outcome, shown, reply_to)
    else:
        await _release(session, ctx, case, member, outcome, shown, reply_to)


def _may(case: Case, actor: Actor, early: bool) -> Refusal | None:
    if not early:
        return check(case, "inspect_anomaly", actor)  # received, by the warehouse
    if "warehouse" not in actor.roles and not actor.is_admin:
        return Refusal(f"您没有「{role_zh('warehouse')}」角色，不能执行此操作")
    return None


async def _release(
    session: AsyncSession,
    ctx: Ctx,
    case: Case,
    member: Member,
    outcome: str,
    shown: str,
    reply_to: Sender,
) -> None:
    actor = Actor.of(member)
    if case.kind == "exchange":
        refusal = await exchange.request(session, ctx, case, actor, f"验货{shown}，申请补发")
        text = exchange.requested_text(case)
    else:
        refusal = await steps.release_refund(
            session, ctx, case, "inspect_ok", actor, f"验货{shown}"
        )
        text = f"{case.id} 验货{shown}，已放行退款 {yuan_zh(case.refund_fen or 0)}"
    if refusal is not None:
        await refuse(session, ctx, case, actor, outcome, refusal.reason, reply_to)
        return
    await notify.send_text(session, ctx, reply_to, text, case.id)


async def _hold(
    session: AsyncSession,
    ctx: Ctx,
    case: Case,
    member: Member,
    outcome: str,
    detail: str,
    shown: str,
    history: tuple[str, ...],
    reply_to: Sender,
) -> None:
    """On hold: the money waits, the clocks of the old stage stop, risk is alerted."""
    now = ctx.now()
    result = fire(case, "inspect_anomaly", Actor.of(member), now, why=shown,
                  detail={"outcome": outcome, "part": detail})  # fmt: skip
    if isinstance(result, Refusal):
        await refuse(session, ctx, case, Actor.of(member), outcome, result.reason, reply_to)
        return
    session.add(result)
    await timers.cancel_for_case(session, case.id)
    await notify.channel_event(session, ctx, case, "on_hold", finding=outcome, detail=detail)
    await resolve.alert_risk(session, ctx, case, member, outcome, detail, history)
    await notify.send_text(
        session,
        ctx,
        reply_to,
        f"已记录 {case.id} 验货异常（{shown}），退款已暂停并通知风控。可继续发送照片作为凭证",
        case.id,
    )


async def _reject(
    session: AsyncSession,
    ctx: Ctx,
    case: Case,
    member: Member,
    outcome: str,
    shown: str,
    reply_to: Sender,
) -> None:
    """The outcome rules reject this result outright: the channel and CS are told."""
    actor = Actor.of(member)
    reason = f"验货结果为「{shown}」，按验货规则驳回"
    result = fire(case, "inspect_reject", actor, ctx.now(), why=reason)
    if isinstance(result, Refusal):
        await refuse(session, ctx, case, actor, outcome, result.reason, reply_to)
        return
    session.add(result)
    await timers.cancel_for_case(session, case.id)
    await notify.channel_event(session, ctx, case, "rejected", reason=reason)
    await cs_notice.tell_rejected(
        session, ctx, case, member, role_zh("warehouse"), reason, finding=shown
    )
    await notify.send_text(
        session, ctx, reply_to, f"已按验货规则驳回 {case.id} 的退款（{shown}）", case.id
    )
