"""The ReturnCase state machine (DESIGN.md §4) as data.

Each transition names the states it may leave, the state it enters and who may
fire it. `fire` moves the case and returns the audit row to write; a move that
is not allowed returns a `Refusal` with a reason a person can read, never an
exception in the logs.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

from handlers.people import role_zh
from storage.models import AuditEvent, Case, Member


class Status(StrEnum):
    REQUESTED = "requested"
    PENDING_APPROVAL = "pending_approval"
    APPROVED = "approved"
    AWAITING_RETURN = "awaiting_return"
    IN_TRANSIT = "in_transit"
    RECEIVED = "received"
    ON_HOLD = "on_hold"
    REFUND_PENDING = "refund_pending"
    REFUNDED = "refunded"
    EXCHANGE_SHIPPED = "exchange_shipped"
    REJECTED = "rejected"
    CLOSED = "closed"
    EXCHANGE_PENDING = "exchange_pending"  # the reshipment is requested, no waybill yet


FINAL = frozenset({Status.REFUNDED, Status.EXCHANGE_SHIPPED, Status.REJECTED, Status.CLOSED})
OPEN = frozenset(Status) - FINAL

STATUS_ZH = {
    Status.REQUESTED: "已申请",
    Status.PENDING_APPROVAL: "待审批",
    Status.APPROVED: "已同意",
    Status.AWAITING_RETURN: "待买家寄回",
    Status.IN_TRANSIT: "退货在途",
    Status.RECEIVED: "已签收待验货",
    Status.ON_HOLD: "异常挂起",
    Status.REFUND_PENDING: "退款中",
    Status.REFUNDED: "已退款",
    Status.EXCHANGE_SHIPPED: "换货已发出",
    Status.REJECTED: "已驳回",
    Status.CLOSED: "已关闭",
    Status.EXCHANGE_PENDING: "换货待发出",
}

# Who may fire a transition: "system" (routing, timers), "channel" (the shop
# says so), "approver" (the member holding the current step's role), or a set
# of roles.
SYSTEM, CHANNEL, APPROVER = "system", "channel", "approver"


@dataclass(frozen=True, slots=True)
class Transition:
    sources: frozenset[Status]
    target: Status
    by: frozenset[str]


def _t(sources: set[Status] | frozenset[Status], target: Status, *by: str) -> Transition:
    return Transition(frozenset(sources), target, frozenset(by))


S = Status
TRANSITIONS: dict[str, Transition] = {
    "route": _t({S.REQUESTED}, S.PENDING_APPROVAL, SYSTEM),
    # A newer channel version changed the tier: back to requested, routed afresh.
    "reroute": _t({S.PENDING_APPROVAL}, S.REQUESTED, CHANNEL),
    "auto_approve": _t({S.REQUESTED}, S.APPROVED, SYSTEM),
    # An intermediate step of a multi-step approval keeps the case pending.
    "approve_step": _t({S.PENDING_APPROVAL}, S.PENDING_APPROVAL, APPROVER),
    "approve": _t({S.PENDING_APPROVAL}, S.APPROVED, APPROVER),
    "reject": _t({S.PENDING_APPROVAL}, S.REJECTED, APPROVER),
    "transfer": _t({S.PENDING_APPROVAL}, S.PENDING_APPROVAL, APPROVER),
    "await_return": _t({S.APPROVED}, S.AWAITING_RETURN, SYSTEM),
    "release_refund": _t({S.APPROVED}, S.REFUND_PENDING, SYSTEM),
    "buyer_shipped": _t({S.AWAITING_RETURN}, S.IN_TRANSIT, CHANNEL),
    "receive": _t({S.AWAITING_RETURN, S.IN_TRANSIT}, S.RECEIVED, "warehouse"),
    "inspect_ok": _t({S.RECEIVED}, S.REFUND_PENDING, "warehouse"),
    # An exchange ends shipped only when the channel reports the new waybill.
    "ship_exchange": _t({S.EXCHANGE_PENDING}, S.EXCHANGE_SHIPPED, CHANNEL),
    "inspect_anomaly": _t({S.RECEIVED}, S.ON_HOLD, "warehouse"),
    "resolve_refund": _t({S.ON_HOLD}, S.REFUND_PENDING, "risk", "cs_lead", "ops_director"),
    "resolve_reject": _t({S.ON_HOLD}, S.REJECTED, "risk", "cs_lead", "ops_director"),
    # Warehouse rules (handlers/warehouse_rules.py): refund on scan, reject on inspection,
    # an exchange's reshipment, a deduction decided by risk.
    "release_on_scan": _t({S.RECEIVED}, S.REFUND_PENDING, SYSTEM),
    "inspect_reject": _t({S.RECEIVED}, S.REJECTED, "warehouse"),
    "request_exchange": _t({S.RECEIVED}, S.EXCHANGE_PENDING, "warehouse"),
    "resolve_exchange": _t({S.ON_HOLD}, S.EXCHANGE_PENDING, "risk", "cs_lead", "ops_director"),
    "resolve_deduct": _t({S.ON_HOLD}, S.REFUND_PENDING, "risk", "cs_lead", "ops_director"),
    "refunded": _t({S.REFUND_PENDING}, S.REFUNDED, CHANNEL, SYSTEM),
    "close": _t(OPEN, S.CLOSED, CHANNEL),
}


@dataclass(frozen=True, slots=True)
class Actor:
    """Who fires a transition. Members carry their roles; the rest are named."""

    kind: str  # system | channel | member
    name: str
    member_id: int | None = None
    roles: frozenset[str] = field(default_factory=frozenset)

    @classmethod
    def of(cls, member: Member) -> Actor:
        return cls("member", member.name, member.id, frozenset(member.role_names))

    @property
    def label(self) -> str:
        return f"member:{self.name}" if self.kind == "member" else self.kind

    @property
    def is_admin(self) -> bool:
        return "admin" in self.roles


SYSTEM_ACTOR = Actor(SYSTEM, SYSTEM)


@dataclass(frozen=True, slots=True)
class Refusal:
    reason: str


def check(case: Case, name: str, actor: Actor, step_role: str | None = None) -> Refusal | None:
    """Why `actor` may not fire `name` on `case` now, or None if they may."""
    t = TRANSITIONS[name]
    status = Status(case.status)
    if status not in t.sources:
        return Refusal(f"售后单 {case.id} 当前状态为「{STATUS_ZH[status]}」，不能执行此操作")
    if actor.kind in (SYSTEM, CHANNEL):
        return None if actor.kind in t.by else Refusal("此操作需要由人员完成")
    if APPROVER in t.by:
        if step_role is None or step_role not in actor.roles:
            need = role_zh(step_role) if step_role else "审批人"
            return Refusal(f"您没有「{need}」角色，不能处理此审批")
        if case.raised_by is not None and case.raised_by == actor.member_id:
            return Refusal("不能审批自己发起的售后单")
        return None
    roles = t.by - {SYSTEM, CHANNEL}
    if not roles:
        return Refusal("此操作由系统或渠道完成，不能手动执行")
    if not (roles & actor.roles) and not actor.is_admin:
        need = "/".join(role_zh(r) for r in sorted(roles))
        return Refusal(f"您没有「{need}」角色，不能执行此操作")
    return None


_STAMPS = {
    S.APPROVED: "decided_at",
    S.REJECTED: "decided_at",
    S.RECEIVED: "received_at",
    S.REFUNDED: "refunded_at",
    S.CLOSED: "closed_at",
}


def fire(
    case: Case,
    name: str,
    actor: Actor,
    now: datetime,
    *,
    step_role: str | None = None,
    why: str = "",
    detail: dict[str, Any] | None = None,
) -> AuditEvent | Refusal:
    """Apply transition `name`; return the audit row to add, or the refusal."""
    refusal = check(case, name, actor, step_role)
    if refusal is not None:
        return refusal
    source = case.status
    target = TRANSITIONS[name].target
    case.status = target.value
    case.updated_at = now
    stamp = _STAMPS.get(target)
    if stamp and getattr(case, stamp) is None:
        setattr(case, stamp, now)
    return audit(case.id, actor, name, now, source, target.value, why, detail)


def must(result: AuditEvent | Refusal) -> AuditEvent:
    """For system moves: a refusal there is a bug in the caller, not a user error."""
    if isinstance(result, Refusal):
        raise RuntimeError(f"system transition refused: {result.reason}")
    return result


def audit(
    case_id: str | None,
    actor: Actor,
    action: str,
    now: datetime,
    source: str = "",
    target: str = "",
    why: str = "",
    detail: dict[str, Any] | None = None,
) -> AuditEvent:
    """An audit row (who, when, from, to, why); refusals and notes write one too."""
    body = dict(detail or {})
    if why:
        body["why"] = why
    return AuditEvent(
        case_id=case_id,
        at=now,
        actor=actor.label,
        action=action,
        from_status=source,
        to_status=target,
        detail=json.dumps(body, ensure_ascii=False) if body else "",
    )
