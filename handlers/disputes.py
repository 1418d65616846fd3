"""Disputes on a case: scripts filled with its data, and what the buyer answered.

Customer service pulls a scenario's reply (`/话术 缺配件 RC-…`), filled from the case
(product, amounts, inspection finding, deadlines) and from `名称=值` given in chat or
the scenario's per-SKU defaults; a variable nobody supplied is asked for, never left
blank. Every reply pulled is kept on the case (who, when, scenario, the exact text),
and so is every outcome (`/记录 RC-… 客户同意扣款 35元`, or the risk card's buttons),
each with an audit row, so the trail tells the whole dispute.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass

from jinja2 import UndefinedError
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from bot.events import Sender
from bot.money import parse_yuan, yuan
from handlers import cs_notice, notify, views
from handlers.context import Ctx
from handlers.people import role_zh
from handlers.script_library import Catalog, Scenario
from handlers.script_sandbox import RenderError
from handlers.workflow import Actor, audit
from storage.models import ApprovalStep, AuditEvent, Case, DisputeEvent, Member, Timer

log = logging.getLogger(__name__)

OUTCOME_ZH = {"agreed": "客户同意", "refused": "客户拒绝", "escalated": "升级平台介入"}
# The risk card's buttons (handlers/views.py RISK_BUTTONS) -> outcome.
OUTCOME_ACTIONS = {f"dispute_{outcome}": outcome for outcome in OUTCOME_ZH}
# Who may pull scripts and record outcomes: the people who talk to the buyer or decide.
DISPUTE_ROLES = frozenset({"cs_agent", "cs_lead", "ops_director", "risk"})
# Read in this order: "不同意" is a refusal, not an agreement.
_OUTCOME_WORDS = (
    ("refused", ("不同意", "不接受", "拒绝", "不认可")),
    ("escalated", ("平台介入", "升级平台", "申请介入", "投诉平台", "升级")),
    ("agreed", ("同意", "接受", "认可")),
)
_AMOUNT = re.compile(r"[¥￥]\s*(\d{1,9}(?:\.\d{1,2})?)|(\d{1,9}(?:\.\d{1,2})?)\s*元")


def yuan_text(fen: int) -> str:
    """3500 -> '35', 3550 -> '35.50': amounts as a sentence says them ("扣除35元")."""
    return yuan(fen).removesuffix(".00")


def money_value(text: str) -> str | None:
    """A chat amount ('35', '35元', '¥35.5') as `yuan_text`, or None if it is not one."""
    cleaned = text.strip().removeprefix("¥").removeprefix("￥").removesuffix("元").strip()
    try:
        return yuan_text(parse_yuan(cleaned, allow_zero=True))
    except ValueError:
        return None


async def _finding(session: AsyncSession, case: Case) -> str:
    row = await session.scalar(
        select(AuditEvent.detail)
        .where(AuditEvent.case_id == case.id, AuditEvent.action == "inspect_anomaly")
        .order_by(AuditEvent.id.desc())
        .limit(1)
    )
    return str(json.loads(row).get("why", "")) if row else ""


async def due_at(session: AsyncSession, case: Case) -> ApprovalStep | Timer | None:
    """What the case is waiting on with a deadline: its pending step, else its next
    pending timer (reminders and escalations, storage/timers.py)."""
    step = next((s for s in case.steps if s.state == "pending" and s.due_at), None)
    if step is not None:
        return step
    found = await session.scalars(
        select(Timer)
        .where(Timer.case_id == case.id, Timer.status == "pending")
        .order_by(Timer.due_at)
        .limit(1)
    )
    return found.first()


async def case_variables(session: AsyncSession, ctx: Ctx, case: Case) -> dict[str, str]:
    """The variables of docs/scripts.md the case has (those it lacks are left out)."""
    names = list(dict.fromkeys(i.name for i in case.items))
    top = case.reason_code.split(".", 1)[0]
    pending = await due_at(session, case)
    found = {
        "单号": case.id,
        "订单号": case.order_id,
        "商品": "、".join(names),
        "件数": str(sum(i.qty for i in case.items)) if case.items else "",
        "申请金额": yuan_text(case.amount_fen),
        "退款金额": yuan_text(case.refund_fen) if case.refund_fen is not None else "",
        "扣款": yuan_text(case.deduction_fen) if case.deduction_fen else "",
        "买家": case.buyer_nick or case.buyer_ref,
        "原因": views.REASON_ZH.get(top, case.reason_code),
        "原因代码": case.reason_code,
        "退货运单": case.return_waybill or "",
        "快递公司": case.carrier or "",
        "渠道": f"{case.channel} / {case.shop}",
        "申请时间": views.stamp(ctx, case.created_at),
        "签收时间": views.stamp(ctx, case.received_at) if case.received_at else "",
        "验货结果": await _finding(session, case),
        "处理时限": views.stamp(ctx, pending.due_at) if pending and pending.due_at else "",
    }
    return {k: v for k, v in found.items() if v}


@dataclass(frozen=True)
class Filled:
    """A scenario rendered for a case, or what it still needs."""

    scenario: Scenario
    text: str = ""
    missing: tuple[str, ...] = ()
    error: str = ""


def fill(scenario: Scenario, case: Case, known: Mapping[str, str]) -> Filled:
    values = scenario.filled(tuple(i.sku for i in case.items), known)
    missing = scenario.missing(values)
    if missing:
        return Filled(scenario, missing=tuple(missing))
    try:
        return Filled(scenario, scenario.render(values))
    except UndefinedError as exc:  # a variable the template uses, not declared needed
        name = re.search(r"'([^']+)' is undefined", str(exc))
        return Filled(scenario, missing=(name.group(1) if name else str(exc),))
    except RenderError as exc:
        log.warning("script %s for case %s: %s", scenario.name, case.id, exc)
        return Filled(scenario, error=str(exc))


def ask_text(filled: Filled, case: Case) -> str:
    """'缺少变量…请这样发送：/话术 缺配件 RC-… 配件=… 扣款=…'."""
    need = "、".join(filled.missing)
    given = " ".join(f"{n}=…" for n in filled.missing)
    return (
        f"生成「{filled.scenario.title}」话术还缺少：{need}。"
        f"请这样发送：/话术 {filled.scenario.name} {case.id} {given}"
    )


async def pull(
    session: AsyncSession, ctx: Ctx, case: Case, filled: Filled, actor: Actor
) -> DisputeEvent:
    """Keep the reply pulled for `case` (who, when, scenario, the exact text)."""
    now = ctx.now()
    row = DisputeEvent(
        case_id=case.id,
        kind="script",
        scenario=filled.scenario.name,
        text=filled.text,
        actor=actor.label,
        at=now,
    )
    session.add(row)
    session.add(
        audit(case.id, actor, "dispute_script", now, case.status, case.status,
              why=filled.scenario.name, detail={"text": filled.text})
    )  # fmt: skip
    return row


async def suggest_for_hold(
    session: AsyncSession, ctx: Ctx, case: Case, finding: str
) -> tuple[Scenario, str] | None:
    """The scenario an inspection finding suggests, with its reply rendered from the
    case (or, when it needs more, the command that fills it in); None when no scenario
    fits. A rendered reply is kept on the case like one a member pulled."""
    catalog: Catalog = ctx.scripts.catalog(ctx.settings.scripts_dir)
    scenario = catalog.for_finding(finding, case.reason_code)
    if scenario is None:
        return None
    filled = fill(scenario, case, await case_variables(session, ctx, case))
    if filled.text:
        await pull(session, ctx, case, filled, Actor("system", "system"))
        return scenario, filled.text
    return scenario, ask_text(filled, case) if filled.missing else filled.error


async def tell_hold(
    session: AsyncSession, ctx: Ctx, case: Case, label: str, suggestion: tuple[Scenario, str]
) -> None:
    """The case's customer service hears of the hold, with the suggested reply."""
    agents = await cs_notice.service_members(session, case)
    scenario, text = suggestion
    notice = (
        f"【验货异常】{case.id} 验货结果「{label}」，退款已暂停，等待风控处理。\n"
        f"建议话术（{scenario.title}）：\n{text}\n"
        f"买家回复后请记录：/记录 {case.id} 客户同意… / 客户拒绝… / 升级平台介入"
    )
    await notify.tell(session, ctx, agents, notice, case.id)


def parse_outcome(text: str) -> tuple[str | None, int | None]:
    """('agreed', 3500) for '客户同意扣款 35元'; (None, None) for a plain remark."""
    outcome = next((o for o, words in _OUTCOME_WORDS if any(w in text for w in words)), None)
    if outcome is None:
        return None, None
    amount = _AMOUNT.search(text)
    fen = parse_yuan(amount.group(1) or amount.group(2), allow_zero=True) if amount else None
    return outcome, fen


async def record_outcome(
    session: AsyncSession,
    ctx: Ctx,
    case: Case,
    actor: Actor,
    outcome: str,
    text: str,
    amount_fen: int | None = None,
) -> DisputeEvent:
    """An outcome for the case's latest scenario (the last script pulled, if any)."""
    scenario = await session.scalar(
        select(DisputeEvent.scenario)
        .where(DisputeEvent.case_id == case.id, DisputeEvent.kind == "script")
        .order_by(DisputeEvent.id.desc())
        .limit(1)
    )
    now = ctx.now()
    row = DisputeEvent(
        case_id=case.id,
        kind="outcome",
        scenario=scenario or "",
        outcome=outcome,
        amount_fen=amount_fen,
        text=text,
        actor=actor.label,
        at=now,
    )
    session.add(row)
    detail = {"outcome": outcome, "scenario": scenario or ""}
    if amount_fen is not None:
        detail["amount"] = yuan(amount_fen)
    session.add(
        audit(case.id, actor, "dispute_outcome", now, case.status, case.status, why=text,
              detail=detail)
    )  # fmt: skip
    return row


async def dispute_lines(session: AsyncSession, ctx: Ctx, case: Case) -> tuple[str, ...]:
    """For /查单: the case's scripts and outcomes, oldest first (the last five)."""
    found = await session.scalars(
        select(DisputeEvent)
        .where(DisputeEvent.case_id == case.id)
        .order_by(DisputeEvent.id.desc())
        .limit(5)
    )
    lines = []
    for row in reversed(list(found)):
        who = row.actor.removeprefix("member:")
        when = views.stamp(ctx, row.at)
        if row.kind == "script":
            lines.append(f"纠纷：{when} {who} 调取话术「{row.scenario}」")
        else:
            money = f" {yuan_text(row.amount_fen)}元" if row.amount_fen is not None else ""
            lines.append(f"纠纷：{when} {who} 记录「{OUTCOME_ZH.get(row.outcome, row.outcome)}"
                         f"{money}」{row.text}".rstrip())  # fmt: skip
    return tuple(lines)


async def outcome_clicked(
    session: AsyncSession, ctx: Ctx, case: Case, member: Member, action: str, reply_to: Sender
) -> None:
    """客户同意 / 客户拒绝 / 升级平台介入 on the risk card: the outcome is recorded and
    the card stays open (risk still decides the refund)."""
    actor = Actor.of(member)
    outcome = OUTCOME_ACTIONS[action]
    if not (DISPUTE_ROLES & actor.roles) and not actor.is_admin:
        need = "/".join(role_zh(r) for r in sorted(DISPUTE_ROLES))
        why = f"您没有「{need}」角色，不能记录纠纷结果"
        session.add(audit(case.id, actor, f"refused:{action}", ctx.now(), why=why))
        await notify.send_text(session, ctx, reply_to, why, case.id)
        return
    await record_outcome(session, ctx, case, actor, outcome, OUTCOME_ZH[outcome])
    await notify.send_text(
        session, ctx, reply_to, f"已记录 {case.id} 的纠纷结果：{OUTCOME_ZH[outcome]}", case.id
    )
