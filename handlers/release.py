"""When a return's refund leaves: on approval, on the first scan, or on inspection.

The rule is per tier ([release] in warehouse.toml; refund-only cases always on
approval). Whenever it is, the release is one outbox row `channel.refund` whose
`refund_id` (the case id) is the channel's idempotency key (handlers/steps.py
`released`), so retries of the row never refund twice.

A refund released before inspection cannot be held any more: the parcel is still
scanned (its receipt recorded on the case) and inspected, an anomaly still counts
for the buyer's abuse flag and is reported to risk, but the money has left.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from bot.events import Sender
from handlers import notify, steps
from handlers.context import Ctx
from handlers.people import holders
from handlers.workflow import SYSTEM_ACTOR, Actor, Refusal, Status, audit
from storage.models import Case, Inspection, Member

WHEN_ZH = {"approval": "审批通过时", "scan": "扫码签收时", "inspection": "验货完好时"}
RELEASED = (Status.REFUND_PENDING.value, Status.REFUNDED.value)


def release_on(ctx: Ctx, case: Case) -> str:
    return ctx.settings.warehouse.release_on(case)


def released_before_receipt(case: Case) -> bool:
    """A return refunded on approval whose parcel has not been scanned yet."""
    return case.kind == "return_refund" and case.status in RELEASED and case.received_at is None


def released_after_receipt(case: Case) -> bool:
    """A return whose parcel was received and whose refund has left (by any rule)."""
    return (
        case.kind == "return_refund" and case.status in RELEASED and case.received_at is not None
    )


async def released_before_inspection(session: AsyncSession, case: Case) -> bool:
    """A return refunded before anyone inspected its (received) parcel."""
    if not released_after_receipt(case):
        return False
    done = await session.scalar(select(Inspection.id).where(Inspection.case_id == case.id))
    return done is None


async def receive_released(
    session: AsyncSession, ctx: Ctx, case: Case, member: Member, code: str
) -> bool:
    """Record the receipt of a parcel whose refund already left (status unchanged);
    False when the case is not such a case, for the ordinary `receive` move."""
    if not released_before_receipt(case):
        return False
    now = ctx.now()
    case.received_at, case.updated_at = now, now
    if not case.return_waybill:
        case.return_waybill = code
    session.add(
        audit(case.id, Actor.of(member), "receive", now, case.status, case.status,
              why=f"扫码签收 {code}（退款已于审批时放行）")
    )  # fmt: skip
    return True


async def after_receive(session: AsyncSession, ctx: Ctx, case: Case) -> str:
    """Release on the first scan when the tier says so; the reply's extra words."""
    if release_on(ctx, case) != "scan":
        return ""
    refusal = await steps.release_refund(
        session, ctx, case, "release_on_scan", SYSTEM_ACTOR, "档位规则：扫码签收即退款"
    )
    return "" if refusal is not None else "，退款已按规则放行"


async def inspected_after_release(
    session: AsyncSession,
    ctx: Ctx,
    case: Case,
    member: Member,
    outcome: str,
    shown: str,
    history: tuple[str, ...],
    reply_to: Sender,
) -> None:
    """The inspection of a parcel whose refund already left: recorded, and an anomaly
    reported to risk (no hold: there is nothing left to pause)."""
    now = ctx.now()
    when = WHEN_ZH.get(release_on(ctx, case), "")
    session.add(
        audit(case.id, Actor.of(member), "inspect_after_release", now, case.status,
              case.status, why=shown, detail={"outcome": outcome})
    )  # fmt: skip
    if outcome != "ok":
        text = "\n".join(
            [
                f"⚠ {case.id} 验货异常（{shown}，{member.name}），退款已于{when}按规则放行，"
                "无法暂停；如需追偿请联系买家",
                *history,
            ]
        )
        await notify.tell(session, ctx, await holders(session, "risk"), text, case.id)
    await notify.send_text(
        session,
        ctx,
        reply_to,
        f"已记录 {case.id} 验货结果：{shown}（退款已于{when}放行）",
        case.id,
    )


def refusal_after_release(case: Case) -> Refusal:
    return Refusal(f"{case.id} 已验货，退款已放行，无需重复验货")
