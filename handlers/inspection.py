"""The inspection result: 完好 / 破损 / 缺配件 / 错发调包 / 空包, and what follows it.

Anything but 完好 first asks which part or what damage (a preset list per SKU
category from warehouse.toml, or free text; the member's next chat message is the
answer) and invites photos, which the evidence window attaches to the case in
hand. Then the outcome rules ([outcomes]) decide: release the refund (an exchange:
request the reshipment), hold it for risk, or reject it. Every result is stored as
an inspection row, from which the buyer's anomalies are counted for the abuse flag.
"""

from __future__ import annotations

from dataclasses import dataclass

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
    found = Finding(case, member, outcome, detail, reply_to)
    now = ctx.now()
    session.add(
        Inspection(case_id=case.id, channel=case.channel, buyer_ref=case.buyer_ref,
                   outcome=outcome, detail=detail, inspector=member.name, at=now)
    )  # fmt: skip
    await session.flush()
    history = await abuse.after_incident(session, ctx, case, outcome) if outcome != "ok" else ()
    done = f"已由 {member.name} 于 {views.stamp(ctx, now)} 验货：{found.shown}"
    await notify.close_cards(session, ctx, case.id, done, kind="inspection")
    if early:
        await release.inspected_after_release(
            session, ctx, case, member, outcome, found.shown, history, reply_to
        )
        return
    follows = ctx.settings.warehouse.follows(outcome)
    if follows == "hold":
        await _hold(session, ctx, found, history)
    elif follows == "reject":
        await _reject(session, ctx, found)
    else:
        await _release(session, ctx, found)


@dataclass(frozen=True, slots=True)
class Finding:
    """One inspection result, recorded: who found what on which case."""

    case: Case
    member: Member
    outcome: str
    detail: str
    reply_to: Sender

    @property
    def shown(self) -> str:
        return views.finding_zh(self.outcome, self.detail)

    @property
    def actor(self) -> Actor:
        return Actor.of(self.member)

    async def refused(self, session: AsyncSession, ctx: Ctx, refusal: Refusal) -> None:
        await refuse(session, ctx, self.case, self.actor, self.outcome, refusal.reason,
                     self.reply_to)  # fmt: skip

    async def reply(self, session: AsyncSession, ctx: Ctx, text: str) -> None:
        await notify.send_text(session, ctx, self.reply_to, text, self.case.id)


def _may(case: Case, actor: Actor, early: bool) -> Refusal | None:
    if not early:
        return check(case, "inspect_anomaly", actor)  # received, by the warehouse
    if "warehouse" not in actor.roles and not actor.is_admin:
        return Refusal(f"您没有「{role_zh('warehouse')}」角色，不能执行此操作")
    return None


async def _release(session: AsyncSession, ctx: Ctx, found: Finding) -> None:
    case, shown = found.case, found.shown
    if case.kind == "exchange":
        refusal = await exchange.request(session, ctx, case, found.actor, f"验货{shown}，申请补发")
        text = exchange.requested_text(case)
    else:
        refusal = await steps.release_refund(
            session, ctx, case, "inspect_ok", found.actor, f"验货{shown}"
        )
        text = f"{case.id} 验货{shown}，已放行退款 {yuan_zh(case.refund_fen or 0)}"
    if refusal is not None:
        await found.refused(session, ctx, refusal)
        return
    await found.reply(session, ctx, text)


async def _hold(session: AsyncSession, ctx: Ctx, found: Finding, history: tuple[str, ...]) -> None:
    """On hold: the money waits, the clocks of the old stage stop, risk is alerted."""
    case = found.case
    result = fire(case, "inspect_anomaly", found.actor, ctx.now(), why=found.shown,
                  detail={"outcome": found.outcome, "part": found.detail})  # fmt: skip
    if isinstance(result, Refusal):
        await found.refused(session, ctx, result)
        return
    session.add(result)
    await timers.cancel_for_case(session, case.id)
    await notify.channel_event(
        session, ctx, case, "on_hold", finding=found.outcome, detail=found.detail
    )
    await resolve.alert_risk(session, ctx, case, found.member, found.outcome, found.detail,
                             history)  # fmt: skip
    held = f"已记录 {case.id} 验货异常（{found.shown}），退款已暂停并通知风控"
    await found.reply(session, ctx, f"{held}。可继续发送照片作为凭证")


async def _reject(session: AsyncSession, ctx: Ctx, found: Finding) -> None:
    """The outcome rules reject this result outright: the channel and CS are told."""
    case = found.case
    reason = f"验货结果为「{found.shown}」，按验货规则驳回"
    result = fire(case, "inspect_reject", found.actor, ctx.now(), why=reason)
    if isinstance(result, Refusal):
        await found.refused(session, ctx, result)
        return
    session.add(result)
    await timers.cancel_for_case(session, case.id)
    await notify.channel_event(session, ctx, case, "rejected", reason=reason)
    await cs_notice.tell_rejected(
        session, ctx, case, found.member, role_zh("warehouse"), reason, finding=found.shown
    )
    await found.reply(session, ctx, f"已按验货规则驳回 {case.id} 的退款（{found.shown}）")
