"""Warehouse: scan the return waybill and answer with the inspection card.

A scan (a PDA types the waybill into chat) matches the parcel to its case and
answers with the inspection card; the result and what follows it are in
handlers/inspection.py, release timing in handlers/release.py, risk's decisions
on a held case in handlers/resolve.py.
"""

from __future__ import annotations

import json

from sqlalchemy import func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from bot.events import ImageMessage, Sender
from handlers import inspection, notify, release, views
from handlers.approvals import load_case, refuse
from handlers.context import Ctx
from handlers.inbox import once
from handlers.people import holders
from handlers.workflow import Actor, Refusal, Status, audit, fire
from storage.models import AuditEvent, Case, Evidence, Member

RECEIVABLE = (Status.AWAITING_RETURN.value, Status.IN_TRANSIT.value)


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
    if await release.receive_released(session, ctx, case, member, code):
        await inspection.send_card(session, ctx, member, case)
        await notify.send_text(
            session, ctx, reply_to, f"已签收 {case.id}（退款已放行），请验货", case.id
        )
        return
    result = fire(case, "receive", actor, ctx.now(), why=f"扫码签收 {code}")
    if isinstance(result, Refusal):
        await refuse(session, ctx, case, actor, "receive", result.reason, reply_to)
        return
    session.add(result)
    if not case.return_waybill:
        case.return_waybill = code
    released = await release.after_receive(session, ctx, case)
    await inspection.send_card(session, ctx, member, case)
    await notify.send_text(session, ctx, reply_to, f"已签收 {case.id}{released}，请验货", case.id)


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
        f"等待风控（{risk}）、客服组长或运营总监决定：全额退款、扣款退款"
        f"（/扣款退款 {case.id} 配件或金额 原因），或驳回退款（/驳回退款 {case.id} 原因）"
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
