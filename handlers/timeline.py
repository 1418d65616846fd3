"""A case's timeline, as the console shows it: everything that happened, in order, in zh.

Read from what already records it: the audit trail (every transition with who and
why, refusals and notes too), the approval steps (who the case was routed to, and
when), deduction proposals (handlers/deduction.py) and the SLA reminders that left
through the outbox (handlers/sla_notify.py writes no audit row for a reminder; an
escalation has one). Nothing here writes.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import selectinload

from bot.money import yuan_zh
from handlers.context import Ctx
from handlers.people import ROLE_ZH, role_zh
from handlers.views import reason_zh
from handlers.workflow import STATUS_ZH, Status
from storage.models import ApprovalStep, AuditEvent, Case, OutboxMessage, Resolution

REMINDER_MARK = "⏰"  # how handlers/sla_notify.py starts a reminder text

# label, tone (good | bad | info | muted): how the page colours the entry's dot
ACTION_ZH: dict[str, tuple[str, str]] = {
    "created": ("收到售后申请", "info"),
    "route": ("进入审批", "info"),
    "reroute": ("重新分派审批", "info"),
    "auto_approve": ("自动同意", "good"),
    "approve_step": ("本级审批同意", "good"),
    "approve": ("审批同意", "good"),
    "reject": ("审批驳回", "bad"),
    "transfer": ("转交", "info"),
    "await_return": ("等待买家寄回", "info"),
    "release_refund": ("放行退款", "good"),
    "release_on_scan": ("扫码签收即放行退款", "good"),
    "buyer_shipped": ("买家已寄回", "info"),
    "waybill": ("登记退货运单", "info"),
    "receive": ("仓库扫码签收", "info"),
    "inspect_ok": ("验货完好", "good"),
    "inspect_anomaly": ("验货异常，挂起", "bad"),
    "inspect_reject": ("验货不通过，驳回", "bad"),
    "inspect_after_release": ("放行后验货", "info"),
    "request_exchange": ("安排换货", "info"),
    "ship_exchange": ("换货已发出", "good"),
    "exchange_ignored": ("忽略换货通知", "muted"),
    "resolve_refund": ("处理挂起：全额退款", "good"),
    "resolve_deduct": ("处理挂起：扣款退款", "good"),
    "resolve_reject": ("处理挂起：驳回退款", "bad"),
    "resolve_exchange": ("处理挂起：改为换货", "info"),
    "refunded": ("已退款", "good"),
    "refund_failed": ("退款失败", "bad"),
    "refunded_after_close": ("关闭后仍退款", "bad"),
    "refunded_ignored": ("忽略退款通知", "muted"),
    "close": ("渠道关闭售后单", "muted"),
    "revised": ("买家修改申请", "info"),
    "updated": ("渠道更新", "muted"),
    "note": ("备注", "muted"),
    "evidence": ("添加照片证据", "info"),
    "dispute_script": ("使用纠纷话术", "info"),
    "dispute_outcome": ("纠纷结果", "info"),
    "flag_customer": ("标记风险买家", "bad"),
    "unflag_customer": ("解除买家标记", "info"),
    "unexpected_matched": ("匹配到意外包裹", "info"),
    "sla_escalate": ("时效升级", "bad"),
}


STEP = "分派审批"
ROUTED = frozenset(
    ACTION_ZH[a][0]
    for a in ("created", "route", "reroute", "auto_approve", "approve_step", "transfer")
)


@dataclass(frozen=True, slots=True)
class Entry:
    at: datetime  # naive UTC
    label: str
    actor: str
    detail: str = ""
    tone: str = "info"


def actor_zh(actor: str) -> str:
    """An audit actor as people read it: member:王组长 -> 王组长, system -> 系统."""
    kind, _, name = actor.partition(":")
    if kind == "member" and name:
        return name
    return {"system": "系统", "channel": "渠道"}.get(actor, actor)


def _why(row: AuditEvent) -> str:
    if not row.detail:
        return ""
    try:
        body = json.loads(row.detail)
    except ValueError:
        return row.detail
    return str(body.get("why", "")) if isinstance(body, dict) else ""


def _audit(case: Case, row: AuditEvent) -> Entry:
    if row.action.startswith("refused:"):
        tried = row.action.split(":", 1)[1].removeprefix("/")  # a command's, or a click's
        label, tone = f"操作未执行（{ACTION_ZH.get(tried, (tried, ''))[0]}）", "muted"
    else:
        label, tone = ACTION_ZH.get(row.action, (row.action, "info"))
    detail = _why(row)
    if row.action in ("route", "reroute"):  # 档位「…」：cs_lead -> 客服组长
        for role, zh in ROLE_ZH.items():
            detail = detail.replace(role, zh)
    if row.action == "created":
        detail = f"{yuan_zh(case.amount_fen)} · {reason_zh(case)}"
    if row.from_status and row.from_status != row.to_status and row.to_status in set(Status):
        moved = f"→ {STATUS_ZH[Status(row.to_status)]}"
        detail = f"{detail}（{moved}）" if detail else moved
    return Entry(row.at, label, actor_zh(row.actor), detail, tone)


def _step(step: ApprovalStep) -> Entry | None:
    if step.opened_at is None:
        return None
    who = f"：{step.assignee.name}" if step.assignee is not None else ""
    detail = f"第 {step.seq} 级 · {role_zh(step.role)}{who}"
    return Entry(step.opened_at, STEP, "系统", detail, "info")


def _resolutions(row: Resolution) -> list[Entry]:
    what = f"扣款 {yuan_zh(row.deduction_fen)}" + (f"（{row.reason}）" if row.reason else "")
    found = [Entry(row.proposed_at, "提议扣款", row.proposed_by, what, "info")]
    if row.state == "discarded" and row.decided_at is not None:
        found.append(Entry(row.decided_at, "取消扣款", row.decided_by, what, "muted"))
    return found


def _reminders(rows: list[OutboxMessage]) -> list[Entry]:
    """One entry per reminder, naming everyone it went to ("⏰ @王组长 …" to each of them,
    on every platform they are on)."""
    found: dict[tuple[datetime, str], list[str]] = {}
    for row in rows:
        text = str(row.payload.get("text", ""))
        if not text.startswith(REMINDER_MARK):
            continue
        line = text.removeprefix(REMINDER_MARK).strip()
        name = ""
        if line.startswith("@"):
            name, _, line = line[1:].partition(" ")
        if row.status == "pending":
            line += "（发送中）"
        names = found.setdefault((row.created_at, line), [])
        if name and name not in names:
            names.append(name)
    return [
        Entry(
            at, "时效提醒", "系统", f"{line}（提醒 {'、'.join(names)}）" if names else line, "bad"
        )
        for (at, line), names in found.items()
    ]


async def timeline(session: AsyncSession, case_id: str) -> tuple[Case, list[Entry]] | None:
    """The case and its entries, oldest first; None if there is no such case."""
    query = select(Case).where(Case.id == case_id).options(selectinload(Case.steps))
    case = (await session.scalars(query)).first()
    if case is None:
        return None
    audits = await session.scalars(
        select(AuditEvent)
        .where(AuditEvent.case_id == case_id)
        .order_by(AuditEvent.at, AuditEvent.id)
    )
    entries = [_audit(case, row) for row in audits]
    entries += [e for e in map(_step, case.steps) if e is not None]
    proposals = await session.scalars(select(Resolution).where(Resolution.case_id == case_id))
    for proposal in proposals:
        entries += _resolutions(proposal)
    # A reminder that went dead (a member no longer on the platform) or was voided
    # reached nobody; one still waiting (rate limit, outage) shows as on its way.
    texts = await session.scalars(
        select(OutboxMessage).where(
            OutboxMessage.case_id == case_id,
            OutboxMessage.kind == "text.send",
            OutboxMessage.status.in_(("sent", "pending")),
        )
    )
    entries += _reminders(list(texts))
    # Stable, so the audit's own order holds among equal times; a step opened at the
    # moment of its routing comes right after it, before anything decided on it.
    entries.sort(key=lambda e: (e.at, 0 if e.label in ROUTED else 1 if e.label == STEP else 2))
    return case, entries


def when(ctx: Ctx, moment: datetime) -> str:
    return f"{ctx.local(moment):%Y-%m-%d %H:%M:%S}"
