"""Warehouse: scan the return waybill and answer with the inspection card.

A scan (handlers/scan.py matches what a PDA typed or a photo showed) receives
the parcel's case and answers with the inspection card; the result and what
follows it are in handlers/inspection.py, release timing in handlers/release.py,
risk's decisions on a held case in handlers/resolve.py. Photos: handlers/photos.py.
"""

from __future__ import annotations

import json

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from bot.events import Sender
from handlers import inspection, notify, release, views
from handlers.approvals import refuse
from handlers.context import Ctx
from handlers.people import holders
from handlers.workflow import Actor, Refusal, Status, fire
from storage.models import AuditEvent, Case, Evidence, Member

RECEIVABLE = (Status.AWAITING_RETURN.value, Status.IN_TRANSIT.value)


async def scan(
    session: AsyncSession, ctx: Ctx, member: Member, case: Case, code: str, reply_to: Sender
) -> None:
    """A parcel in hand: mark its case received and give the scanner the inspection card.

    `case` is the one handlers/scan.py matched to `code`, loaded and locked; a second
    scan of a parcel already received is answered there."""
    actor = Actor.of(member)
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
