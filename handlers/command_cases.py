"""The commands about one case: /查单, /同意 /驳回 /转交, /驳回退款, /记录, /取消.

A case argument may be the case id, the shop's order number or the return waybill:
people copy whichever they have in front of them. An order with several cases asks
for the case id instead of guessing.
"""

from __future__ import annotations

from sqlalchemy import func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import selectinload

from handlers import approvals, disputes, views, warehouse
from handlers.command_grammar import CASE_ID, Call, Run
from handlers.workflow import OPEN, Actor, Status, audit
from storage.models import Case, Evidence, PendingReply, Timer

CASE_REF = "RC-…|订单号|运单号"


async def find_cases(session: AsyncSession, code: str) -> list[Case]:
    """Cases the code names: its id, or an order number or waybill; newest first."""
    wanted = code.upper() if CASE_ID.fullmatch(code) else code
    found = await session.scalars(
        select(Case)
        .where(or_(Case.id == wanted, Case.order_id == code, Case.return_waybill == code))
        .options(selectinload(Case.items), selectinload(Case.steps))
        .order_by(Case.created_at.desc())
        .limit(5)
    )
    return list(found)


async def case_arg(call: Call, usage: str, index: int = 0) -> str | None:
    """The id of the one case argument `index` names, or None after saying why."""
    if len(call.args) <= index:
        await call.reply(f"用法：{usage}")
        return None
    code = call.args[index]
    cases = await find_cases(call.session, code)
    if not cases:
        await call.reply(f"未找到与 {code} 相关的售后单")
        return None
    open_ones = [c for c in cases if Status(c.status) in OPEN]
    if len(cases) > 1 and len(open_ones) != 1:
        ids = "、".join(c.id for c in cases)
        await call.reply(f"{code} 对应多个售后单：{ids}，请改用售后单号")
        return None
    return (open_ones or cases)[0].id


async def _evidence_line(session: AsyncSession, case: Case) -> str:
    rows = await session.execute(
        select(Evidence.kind, func.count(Evidence.id))
        .where(Evidence.case_id == case.id)
        .group_by(Evidence.kind)
    )
    counts = {kind: int(n) for kind, n in rows}
    kinds = (("photo", "照片", "张"), ("url", "链接", "个"), ("note", "备注", "条"))
    parts = [f"{zh} {counts[k]} {unit}" for k, zh, unit in kinds if counts.get(k)]
    return f"证据：{'，'.join(parts) if parts else '暂无'}"


async def details(call: Call, case: Case) -> str:
    """The /查单 answer for one case: status (why it is held), steps with who and when,
    the SLA due time, evidence, and the dispute so far."""
    session, ctx = call.session, call.ctx
    extra = list(await warehouse.hold_lines(session, ctx, case))
    waiting = await disputes.due_at(session, case)
    if isinstance(waiting, Timer):  # a pending step's due time is on its own line already
        extra.append(f"SLA 时限：{views.stamp(ctx, waiting.due_at)}")
    extra.append(await _evidence_line(session, case))
    extra += await disputes.dispute_lines(session, ctx, case)
    return views.summary_text(ctx, case, tuple(extra))


async def lookup(call: Call) -> None:
    if not call.args:
        await call.reply(f"用法：/查单 {CASE_REF}")
        return
    cases = await find_cases(call.session, call.args[0])
    if not cases:
        await call.reply(f"未找到与 {call.args[0]} 相关的售后单")
        return
    answers = [await details(call, c) for c in cases[:3]]
    await call.reply("\n\n".join(answers), cases[0].id)


def decision(action: str, usage: str) -> Run:
    async def run(call: Call) -> None:
        case_id = await case_arg(call, usage)
        if case_id is None:
            return
        rest = call.rest()
        await approvals.decide(
            call.session,
            call.ctx,
            case_id,
            call.member,
            action,
            call.event.sender,
            reason=rest,
            target=rest,
        )

    return run


async def reject_refund(call: Call) -> None:
    """/驳回退款 RC-… 原因: risk's 驳回退款 as text; without a reason it changes nothing."""
    case_id = await case_arg(call, "/驳回退款 RC-… 原因")
    if case_id is None:
        return
    await warehouse.resolve(
        call.session,
        call.ctx,
        case_id,
        call.member,
        "resolve_reject",
        call.event.sender,
        reason=call.rest(),
    )


async def note(call: Call) -> None:
    """/记录 RC-… 内容: a remark on the case; one that says how the buyer answered
    (客户同意 / 客户拒绝 / 升级平台介入, with an amount) is a dispute outcome too."""
    usage = f"/记录 {CASE_REF} 内容"
    text = call.rest()
    if call.args and not text:
        await call.reply(f"用法：{usage}")
        return
    case_id = await case_arg(call, usage)
    case = await call.session.get(Case, case_id) if case_id else None
    if case is None:
        return
    now, actor = call.ctx.now(), Actor.of(call.member)
    call.session.add(
        Evidence(case_id=case.id, kind="note", ref=text, added_by=call.member.name, at=now)
    )
    call.session.add(audit(case.id, actor, "note", now, case.status, case.status, why=text))
    outcome, amount = disputes.parse_outcome(text)
    if outcome is None:
        await call.reply(f"已记录到 {case.id}", case.id)
        return
    await disputes.record_outcome(call.session, call.ctx, case, actor, outcome, text, amount)
    money = f"，金额 {disputes.yuan_text(amount)}元" if amount is not None else ""
    await call.reply(
        f"已记录到 {case.id}，纠纷结果：{disputes.OUTCOME_ZH[outcome]}{money}", case.id
    )


async def cancel(call: Call) -> None:
    pending = await call.session.get(PendingReply, call.member.id)
    if pending is None:
        await call.reply("没有等待您回复的操作")
        return
    await call.session.delete(pending)
    await call.reply(f"已取消对 {pending.case_id} 的操作")
