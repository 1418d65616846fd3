"""A parcel scanned in the warehouse (typed by a PDA, by a person, or decoded from a
photo) -> its case.

The text becomes candidate codes (handlers/waybills.py), looked up exactly, by
index, as waybill, order id or case id. One case to receive: it is received and
the scanner gets the inspection card (handlers/warehouse.py). Several: a numbered
list; the next message (a number, or the case id) or `/查单 RC-…` picks one.
None: say so and offer to record an unexpected parcel (handlers/parcels.py). A
parcel received before is not received again: the reply says who received it,
and when. Whatever was scanned last is the case "in hand" for photos.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Sequence
from datetime import timedelta

from sqlalchemy import or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from bot.events import Sender
from bot.money import yuan_zh
from handlers import notify, parcels, views, warehouse, waybills
from handlers.approvals import load_case
from handlers.context import Ctx
from handlers.workflow import STATUS_ZH, Status
from storage.models import AuditEvent, Case, Member, ScanState

MAX_CHOICES = 9
MAX_MATCHES = 50
PROMPT_TTL = timedelta(minutes=30)
YES = frozenset({"登记", "是", "确认", "好", "1", "y", "yes", "ok"})
PICK, UNEXPECTED = "pick", "unexpected"


async def scan_text(
    session: AsyncSession, ctx: Ctx, member: Member, text: str, reply_to: Sender
) -> Case | None:
    """A plain message that `waybills.looks_like_code`; returns the case scanned, if one."""
    return await scan_codes(session, ctx, member, waybills.codes(text), reply_to, text.strip())


async def scan_codes(
    session: AsyncSession,
    ctx: Ctx,
    member: Member,
    codes: Sequence[str],
    reply_to: Sender,
    scanned: str,
) -> Case | None:
    """Match `codes` (candidates, most likely first) and act on what they find."""
    state = await _state(session, member)
    state.prompt, state.choices, state.asked_at = "", [], None
    found = await matches(session, codes)
    shown = (codes[0] if codes else scanned)[: waybills.MAX_LEN]
    if not found:
        await _none(session, ctx, member, state, shown, reply_to)
        return None
    receivable = [c for c in found if c.status in warehouse.RECEIVABLE]
    if len(receivable) > 1:
        await _offer(session, ctx, state, shown, receivable[:MAX_CHOICES], reply_to)
        return None
    received = [c for c in found if c.received_at is not None]
    target = (receivable or received or found)[0]
    return await receive(session, ctx, member, target.id, shown, reply_to)


async def matches(session: AsyncSession, codes: Sequence[str]) -> list[Case]:
    """Cases whose waybill, order id or id is one of `codes`: the newest first.

    Each column is looked up by its index; the few matches are ordered here."""
    if not codes:
        return []
    ids = [c.upper() for c in codes]
    found = await session.scalars(
        select(Case)
        .where(or_(Case.return_waybill.in_(codes), Case.order_id.in_(codes), Case.id.in_(ids)))
        .limit(MAX_MATCHES)
    )
    return sorted(found, key=lambda c: (c.created_at, c.id), reverse=True)


async def receive(
    session: AsyncSession, ctx: Ctx, member: Member, case_id: str, code: str, reply_to: Sender
) -> Case | None:
    """Receive one case (the inspection card follows), or say who received it already."""
    case = await load_case(session, ctx, case_id)
    if case is None:
        await notify.send_text(session, ctx, reply_to, f"未找到售后单 {case_id}")
        return None
    state = await _state(session, member)
    state.case_id, state.scanned_at = case.id, ctx.now()
    state.prompt, state.choices, state.asked_at = "", [], None
    if case.received_at is not None and case.status not in warehouse.RECEIVABLE:
        await _already(session, ctx, case, reply_to)
        return case
    await warehouse.scan(session, ctx, member, case, code, reply_to)
    return case


async def in_hand(session: AsyncSession, ctx: Ctx, member: Member) -> str | None:
    """The case `member` scanned within the evidence window, if any."""
    state = await session.get(ScanState, member.id)
    window = timedelta(minutes=ctx.settings.photos.evidence_window_minutes)
    if state is None or state.case_id is None or state.scanned_at is None:
        return None
    return state.case_id if ctx.now() - state.scanned_at <= window else None


async def answer(
    session: AsyncSession, ctx: Ctx, member: Member, text: str, reply_to: Sender
) -> bool:
    """The reply to what the last scan asked: True when `text` answered it."""
    state = await session.get(ScanState, member.id)
    if state is None or not state.prompt or state.asked_at is None:
        return False
    if ctx.now() - state.asked_at > PROMPT_TTL:
        state.prompt, state.choices, state.asked_at = "", [], None
        return False
    word = unicodedata.normalize("NFKC", text).strip()
    if state.prompt == UNEXPECTED and word.lower() in YES:
        code, state.prompt, state.asked_at = state.code, "", None
        await parcels.record(session, ctx, member, code, "", reply_to)
        return True
    if state.prompt == PICK:
        choice = _choice(word, [str(c) for c in state.choices])
        if choice is not None:
            await receive(session, ctx, member, choice, state.code, reply_to)
            return True
    return False


async def pick(
    session: AsyncSession, ctx: Ctx, member: Member, case_id: str, reply_to: Sender
) -> bool:
    """`/查单 RC-…` naming one of the cases a scan listed: receive it (True)."""
    state = await session.get(ScanState, member.id)
    if state is None or state.prompt != PICK or case_id.upper() not in state.choices:
        return False
    if state.asked_at is None or ctx.now() - state.asked_at > PROMPT_TTL:
        return False
    await receive(session, ctx, member, case_id.upper(), state.code, reply_to)
    return True


def _choice(word: str, choices: list[str]) -> str | None:
    if word.isdigit() and 1 <= int(word) <= len(choices):
        return choices[int(word) - 1]
    return word.upper() if word.upper() in choices else None


async def _state(session: AsyncSession, member: Member) -> ScanState:
    state = await session.get(ScanState, member.id)
    if state is None:
        state = ScanState(member_id=member.id, prompt="", code="", choices=[])
        session.add(state)
    return state


async def _none(
    session: AsyncSession,
    ctx: Ctx,
    member: Member,
    state: ScanState,
    code: str,
    reply_to: Sender,
) -> None:
    known = await parcels.recorded(session, code)
    if known is not None:
        text = (
            f"未找到与 {code} 匹配的售后单。该包裹已于 {views.stamp(ctx, known.at)} "
            f"由 {known.recorded_by} 登记为意外包裹（#{known.id}），售后单出现后会自动匹配"
        )
        await notify.send_text(session, ctx, reply_to, text)
        return
    state.prompt, state.code, state.asked_at = UNEXPECTED, code, ctx.now()
    await notify.send_text(
        session,
        ctx,
        reply_to,
        f"未找到与 {code} 匹配的售后单。\n如包裹确实已到仓，回复「登记」记录为意外包裹"
        f"（或发送 /意外包裹 {code} 备注），对应售后单出现后会自动匹配并通知您",
    )


async def _offer(
    session: AsyncSession,
    ctx: Ctx,
    state: ScanState,
    code: str,
    cases: list[Case],
    reply_to: Sender,
) -> None:
    state.prompt, state.code, state.asked_at = PICK, code, ctx.now()
    state.choices = [c.id for c in cases]
    lines = [f"{code} 匹配到 {len(cases)} 个待签收的售后单，请回复序号选择："]
    lines += [
        f"{n}. {c.id} 订单 {c.order_id} · 运单 {c.return_waybill or '—'} · "
        f"{yuan_zh(c.amount_fen)} · {STATUS_ZH[Status(c.status)]}"
        for n, c in enumerate(cases, 1)
    ]
    lines.append("也可发送 /查单 RC-… 选择")
    await notify.send_text(session, ctx, reply_to, "\n".join(lines))


async def _already(session: AsyncSession, ctx: Ctx, case: Case, reply_to: Sender) -> None:
    found = await session.scalars(
        select(AuditEvent)
        .where(AuditEvent.case_id == case.id, AuditEvent.action == "receive")
        .order_by(AuditEvent.at.desc(), AuditEvent.id.desc())
        .limit(1)
    )
    row = found.first()
    who = row.actor.removeprefix("member:") if row else "—"
    when = views.stamp(ctx, row.at if row else case.received_at or case.updated_at)
    text = (
        f"{case.id} 已由 {who} 于 {when} 签收，无需重复签收"
        f"（当前状态：{STATUS_ZH[Status(case.status)]}）"
    )
    if case.status == Status.RECEIVED:
        text += "，请在验货卡片上选择结果"
    await notify.send_text(session, ctx, reply_to, text, case.id)
