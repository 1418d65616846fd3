"""Warehouse: scan the return waybill, inspect, release or hold the refund.

A scan (a PDA types the waybill into chat) matches the parcel to its case and
answers with the inspection card; an anomaly holds the refund and alerts risk.
"""

from __future__ import annotations

import json

from sqlalchemy import func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from bot.events import ImageMessage, Sender
from bot.money import yuan_zh
from handlers import cs_notice, disputes, notify, steps, views
from handlers.approvals import ask, case_or_reply, load_case, refuse
from handlers.context import Ctx
from handlers.inbox import once
from handlers.people import holders, role_zh
from handlers.workflow import TRANSITIONS, Actor, Refusal, Status, audit, check, fire
from storage.models import AuditEvent, Case, Evidence, Member

RECEIVABLE = (Status.AWAITING_RETURN.value, Status.IN_TRANSIT.value)
ANOMALIES = {"damaged", "missing_parts", "wrong_item", "empty"}


async def on_image_message(event: ImageMessage, ctx: Ctx) -> None:
    """A photo from the warehouse: evidence for the case in hand (the last one scanned)."""
    await once(ctx, event.key, event.sender.platform, lambda s: _attach(s, ctx, event))


async def _attach(session: AsyncSession, ctx: Ctx, event: ImageMessage) -> None:
    member = await notify.known_member(session, ctx, event.sender)
    if member is None:
        return
    case_id = await session.scalar(
        select(AuditEvent.case_id)
        .where(AuditEvent.actor == Actor.of(member).label, AuditEvent.action == "receive")
        .order_by(AuditEvent.id.desc())
        .limit(1)
    )
    if case_id is None:
        await notify.send_text(session, ctx, event.sender, "请先发送退货运单号签收，再发送照片")
        return
    now = ctx.now()
    ref = f"{event.sender.platform}:media:{event.media_id}"
    photo = Evidence(case_id=case_id, kind="photo", ref=ref, added_by=member.name, at=now)
    session.add(photo)
    await session.flush()
    notify.fetch_media(ctx, session, photo, event.sender.platform, event.media_id)
    session.add(audit(case_id, Actor.of(member), "evidence", now, why=ref))
    count = await session.scalar(
        select(func.count(Evidence.id)).where(
            Evidence.case_id == case_id, Evidence.kind == "photo"
        )
    )
    await notify.send_text(
        session, ctx, event.sender, f"已将照片附加到 {case_id}（共 {count} 张）", case_id
    )


async def find_for_scan(session: AsyncSession, code: str) -> Case | None:
    """The open case a scanned code belongs to: waybill first, then order id or case id."""
    found = await session.scalars(
        select(Case)
        .where(or_(Case.return_waybill == code, Case.order_id == code, Case.id == code))
        .order_by(Case.status.in_(RECEIVABLE).desc(), Case.created_at.desc())
    )
    return found.first()


async def scan(
    session: AsyncSession, ctx: Ctx, member: Member, code: str, reply_to: Sender
) -> None:
    """A parcel in hand: mark its case received and give the scanner the inspection card."""
    actor = Actor.of(member)
    match = await find_for_scan(session, code)
    case = await load_case(session, ctx, match.id) if match else None
    if case is None:
        await notify.send_text(session, ctx, reply_to, f"未找到与 {code} 匹配的售后单")
        return
    if case.status == Status.RECEIVED:
        await notify.send_text(
            session, ctx, reply_to, f"{case.id} 已签收，请在验货卡片上选择结果", case.id
        )
        return
    result = fire(case, "receive", actor, ctx.now(), why=f"扫码签收 {code}")
    if isinstance(result, Refusal):
        await refuse(session, ctx, case, actor, "receive", result.reason, reply_to)
        return
    session.add(result)
    if not case.return_waybill:
        case.return_waybill = code
    await notify.send_cards(
        session,
        ctx,
        [member],
        case,
        "inspection",
        lambda card_id: views.inspection_card(ctx, case, card_id),
    )
    await notify.send_text(session, ctx, reply_to, f"已签收 {case.id}，请验货", case.id)


async def inspect(
    session: AsyncSession, ctx: Ctx, case_id: str, member: Member, outcome: str, reply_to: Sender
) -> None:
    """The inspection result: release the refund (or ship the exchange), or hold the
    case and alert risk when the parcel is not what was sold."""
    actor = Actor.of(member)
    case = await case_or_reply(session, ctx, case_id, reply_to)
    if case is None:
        return
    label = views.INSPECTION_ZH.get(outcome, outcome)
    now = ctx.now()
    if outcome in ANOMALIES:
        refusal = _added(session, fire(case, "inspect_anomaly", actor, now, why=label))
    elif case.kind == "exchange":
        refusal = _added(
            session, fire(case, "ship_exchange", actor, now, why="验货完好，换货发出")
        )
    else:
        refusal = await steps.release_refund(session, ctx, case, "inspect_ok", actor, "验货完好")
    if refusal is not None:
        await refuse(session, ctx, case, actor, outcome, refusal.reason, reply_to)
        return
    await notify.close_cards(
        session,
        ctx,
        case.id,
        f"已由 {member.name} 于 {views.stamp(ctx, now)} 验货：{label}",
        kind="inspection",
    )
    if outcome in ANOMALIES:
        await notify.channel_event(session, ctx, case, "on_hold", finding=outcome)
        suggestion = await disputes.suggest_for_hold(session, ctx, case, outcome)
        script = f"{suggestion[0].title}：{suggestion[1]}" if suggestion else ""
        await notify.send_cards(
            session,
            ctx,
            await holders(session, "risk"),
            case,
            "risk",
            lambda card_id: views.risk_card(ctx, case, card_id, label, member.name, script),
            role="risk",
        )
        if suggestion is not None:
            await disputes.tell_hold(session, ctx, case, label, suggestion)
        await notify.send_text(
            session,
            ctx,
            reply_to,
            f"已记录 {case.id} 验货异常（{label}），退款已暂停并通知风控",
            case.id,
        )
    else:
        await notify.send_text(session, ctx, reply_to, f"{case.id} 验货完好，已放行", case.id)


async def resolve(
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
    """Risk decides a held case: refund in full, or reject the refund.

    A rejection needs a reason (customer service passes it on to the buyer); a card
    click carries none, so with `ask_reason` the bot says what the rejection will do
    and takes the member's next chat message as the reason (or /取消).
    """
    actor = Actor.of(member)
    case = await case_or_reply(session, ctx, case_id, reply_to)
    if case is None:
        return
    reason = reason.strip()
    if action == "resolve_reject" and not reason:
        refusal = check(case, action, actor)
        if refusal is None and ask_reason:
            await ask(session, ctx, member, case, None, action, _reject_question(case), reply_to)
            return
        refusal = refusal or Refusal(f"驳回退款需要填写原因：/驳回退款 {case.id} 原因")
        await refuse(session, ctx, case, actor, action, refusal.reason, reply_to)
        return
    now = ctx.now()
    if action == "resolve_refund":
        refusal = await steps.release_refund(
            session, ctx, case, "resolve_refund", actor, "风控放行，全额退款"
        )
    else:
        refusal = _added(session, fire(case, "resolve_reject", actor, now, why=reason))
    if refusal is not None:
        await refuse(session, ctx, case, actor, action, refusal.reason, reply_to)
        return
    label = views.ACTION_ZH[action]
    done = f"已由 {member.name} 于 {views.stamp(ctx, now)} {label}"
    await notify.close_cards(
        session, ctx, case.id, f"{done}：{reason}" if reason else done, kind="risk"
    )
    if action == "resolve_refund":
        text = f"已放行 {case.id}，全额退款 {yuan_zh(case.refund_fen or 0)} 已提交渠道"
    else:
        await notify.channel_event(session, ctx, case, "rejected", reason=reason)
        role = (sorted(TRANSITIONS[action].by & actor.roles) or ["admin"])[0]
        finding = _why(await _hold(session, case))
        await cs_notice.tell_rejected(
            session, ctx, case, member, role_zh(role), reason, finding=finding
        )
        text = f"已驳回 {case.id} 的退款（原因：{reason}），已通知渠道和客服"
    await notify.send_text(session, ctx, reply_to, text, case.id)


def _reject_question(case: Case) -> str:
    """The risk card's 驳回退款 has no text box: say what it will do, then ask why."""
    return (
        f"您正在驳回 {case.id} 的退款：买家不会收到 {yuan_zh(case.amount_fen)} 的退款，"
        "售后单将结束为「已驳回」，并通知渠道和客服。\n"
        "请直接回复驳回原因以确认（发送 /取消 放弃）"
    )


async def hold_lines(session: AsyncSession, ctx: Ctx, case: Case) -> tuple[str, ...]:
    """Why an on_hold case waits, and for whom (for /查单): the inspection finding and
    who recorded it, the notes and photos since receipt, and who must decide."""
    if case.status != Status.ON_HOLD:
        return ()
    lines: list[str] = []
    held = await _hold(session, case)
    if held is not None:
        who = held.actor.removeprefix("member:")
        lines.append(
            f"挂起原因：验货「{_why(held)}」（{who} 于 {views.stamp(ctx, held.at)}），退款已暂停"
        )
    since = case.received_at or case.created_at
    found = await session.scalars(
        select(Evidence)
        .where(Evidence.case_id == case.id, Evidence.at >= since)
        .order_by(Evidence.id)
    )
    evidence = list(found)
    notes = [e for e in evidence if e.kind == "note"][-3:]
    lines += [f"备注：{n.ref}（{n.added_by} {views.stamp(ctx, n.at)}）" for n in notes]
    photos = sum(e.kind == "photo" for e in evidence)
    if photos:
        lines.append(f"验货照片 {photos} 张")
    risk = "、".join(m.name for m in await holders(session, "risk")) or "暂无风控成员"
    lines.append(
        f"等待风控（{risk}）或运营总监决定：全额退款，或驳回退款（/驳回退款 {case.id} 原因）"
    )
    return tuple(lines)


async def _hold(session: AsyncSession, case: Case) -> AuditEvent | None:
    """The inspection that put the case on hold (the latest, after a re-inspection)."""
    found = await session.scalars(
        select(AuditEvent)
        .where(AuditEvent.case_id == case.id, AuditEvent.action == "inspect_anomaly")
        .order_by(AuditEvent.id.desc())
        .limit(1)
    )
    return found.first()


def _why(row: AuditEvent | None) -> str:
    """The inspection outcome the audit row recorded (its `why`, e.g. 破损)."""
    if row is None or not row.detail:
        return ""
    why = json.loads(row.detail).get("why", "")
    return str(why)


def _added(session: AsyncSession, result: AuditEvent | Refusal) -> Refusal | None:
    if isinstance(result, Refusal):
        return result
    session.add(result)
    return None
