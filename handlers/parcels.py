"""Unexpected parcels (意外包裹): a return that reached the warehouse before its case.

A buyer ships before the shop has passed the return on, or writes the wrong
order number: the scan matches nothing. The member records the parcel (its code
in canonical form, handlers/waybills.py); it stays searchable (`/意外包裹`), and
when a case with that waybill or order id comes in, intake (`match_arrivals`, in
the intake transaction) links the two, writes it in the case's audit trail and
tells the member who recorded it to scan the parcel again.
"""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from bot.events import Sender
from handlers import notify, views, waybills
from handlers.context import Ctx
from handlers.workflow import SYSTEM_ACTOR, audit
from storage.models import Member, UnexpectedParcel

NOTE_MAX = 200
LIST_MAX = 10
# (case id, status, return waybill, order id) of a case intake just stored.
Arrival = tuple[str, str, str | None, str | None]


async def recorded(session: AsyncSession, code: str) -> UnexpectedParcel | None:
    """The unmatched parcel recorded under `code`'s canonical form, if any."""
    found = await session.scalars(
        select(UnexpectedParcel)
        .where(UnexpectedParcel.code == waybills.canonical(code), UnexpectedParcel.case_id == "")
        .limit(1)
    )
    return found.first()


async def record(
    session: AsyncSession, ctx: Ctx, member: Member, code: str, note: str, reply_to: Sender
) -> UnexpectedParcel | None:
    """Keep a parcel no case matches (once per code while unmatched)."""
    canonical = waybills.canonical(code)
    if not canonical:
        await notify.send_text(session, ctx, reply_to, f"无法识别单号：{code[:40]}")
        return None
    known = await recorded(session, canonical)
    if known is not None:
        await notify.send_text(
            session,
            ctx,
            reply_to,
            f"{canonical} 已于 {views.stamp(ctx, known.at)} 由 {known.recorded_by} "
            f"登记为意外包裹（#{known.id}），无需重复登记",
        )
        return known
    parcel = UnexpectedParcel(
        code=canonical,
        scanned=code[:200],
        note=note.strip()[:NOTE_MAX],
        recorded_by=member.name,
        at=ctx.now(),
    )
    session.add(parcel)
    await session.flush()
    await notify.send_text(
        session,
        ctx,
        reply_to,
        f"已登记意外包裹 #{parcel.id}：{canonical}。对应的售后单出现后会自动匹配并通知您",
    )
    return parcel


async def listing(session: AsyncSession, ctx: Ctx) -> str:
    """The latest unmatched parcels, newest first (for `/意外包裹`)."""
    found = await session.scalars(
        select(UnexpectedParcel)
        .where(UnexpectedParcel.case_id == "")
        .order_by(UnexpectedParcel.at.desc(), UnexpectedParcel.id.desc())
        .limit(LIST_MAX)
    )
    rows = list(found)
    if not rows:
        return "暂无未匹配的意外包裹"
    lines = [f"未匹配的意外包裹（最近 {len(rows)} 件）："]
    lines += [
        f"#{p.id} {p.code} · {p.recorded_by} {views.stamp(ctx, p.at)}"
        + (f" · {p.note}" if p.note else "")
        for p in rows
    ]
    return "\n".join(lines)


async def match_arrivals(session: AsyncSession, ctx: Ctx, arrivals: Iterable[Arrival]) -> None:
    """Link the unmatched parcels whose code is a waybill or order id of a case intake
    just stored, in the intake transaction: one indexed query for the whole batch."""
    wanted: dict[str, tuple[str, str]] = {}
    for case_id, status, waybill, order_id in arrivals:
        for value in (waybill, order_id):
            for code in waybills.codes(value or ""):
                wanted.setdefault(code, (case_id, status))
    if not wanted:
        return
    found = await session.scalars(
        select(UnexpectedParcel)
        .where(UnexpectedParcel.code.in_(list(wanted)), UnexpectedParcel.case_id == "")
        .order_by(UnexpectedParcel.id)
    )
    now = ctx.now()
    for parcel in found:
        case_id, status = wanted[parcel.code]
        parcel.case_id, parcel.matched_at = case_id, now
        why = (
            f"意外包裹 #{parcel.id}（{parcel.scanned}，{parcel.recorded_by} 于 "
            f"{views.stamp(ctx, parcel.at)} 登记）已匹配"
        )
        session.add(audit(case_id, SYSTEM_ACTOR, "unexpected_matched", now, status, status, why))
        recorder = await session.scalar(select(Member).where(Member.name == parcel.recorded_by))
        if recorder is not None and recorder.active:
            text = (
                f"您于 {views.stamp(ctx, parcel.at)} 登记的意外包裹 {parcel.code} 已匹配到售后单 "
                f"{case_id}，请重新扫码签收并验货"
            )
            await notify.tell(session, ctx, [recorder], text, case_id)
