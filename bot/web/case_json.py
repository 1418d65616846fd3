"""A case as the integrations' JSON (CONTRACT.md "HTTP endpoints").

Money leaves as decimal yuan strings ("29.90"), never numbers: a JSON number is
a float in most clients. Times are ISO 8601 in the configured zone, with the
offset, so "10:00+08:00" reads right in Shanghai and parses right anywhere.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from bot.money import yuan
from handlers import sla
from handlers.context import Ctx
from storage.models import ApprovalStep, AuditEvent, Case, Evidence


def iso(ctx: Ctx, moment: datetime | None) -> str | None:
    """A stored (naive UTC) time in the operators' zone, or None."""
    return None if moment is None else ctx.local(moment).isoformat(timespec="seconds")


def summary(ctx: Ctx, case: Case) -> dict[str, Any]:
    """One row of `GET /api/cases`."""
    return {
        "id": case.id,
        "channel": case.channel,
        "shop": case.shop,
        "external_id": case.external_id,
        "order_id": case.order_id,
        "kind": case.kind,
        "status": case.status,
        "tier": case.tier,
        "amount": yuan(case.amount_fen),
        "refund_amount": None if case.refund_fen is None else yuan(case.refund_fen),
        "currency": case.currency,
        "created_at": iso(ctx, case.created_at),
        "updated_at": iso(ctx, case.updated_at),
        # The SLA clock (handlers/sla.py): the current stage's due time, whether any
        # stage ran past its due, and when the channel will act by itself.
        "sla_due_at": iso(ctx, case.sla_due_at),
        "sla_breached": sla.breached(ctx, case),
        "deadline_at": iso(ctx, case.channel_deadline_at),
    }


def _step(ctx: Ctx, step: ApprovalStep) -> dict[str, Any]:
    return {
        "seq": step.seq,
        "role": step.role,
        "state": step.state,
        "actor": step.actor.name if step.actor else None,
        "assignee": step.assignee.name if step.assignee else None,
        "at": iso(ctx, step.decided_at),
        "opened_at": iso(ctx, step.opened_at),
        "due_at": iso(ctx, step.due_at),
        "reason": step.reason or None,
    }


def _detail(text: str) -> Any:
    """Audit details are stored as JSON text; hand them back as objects."""
    if not text:
        return {}
    try:
        return json.loads(text)
    except ValueError:
        return {"text": text}


def _event(ctx: Ctx, row: AuditEvent) -> dict[str, Any]:
    return {
        "at": iso(ctx, row.at),
        "actor": row.actor,
        "action": row.action,
        "from": row.from_status or None,
        "to": row.to_status or None,
        "detail": _detail(row.detail),
    }


def detail(
    ctx: Ctx, case: Case, evidence: Iterable[Evidence], events: Iterable[AuditEvent]
) -> dict[str, Any]:
    """`GET /api/cases/{id}`: the case with items, steps, evidence and the audit trail.

    `case.items` and `case.steps` (with their actor/assignee) must be loaded.
    """
    head = summary(ctx, case)
    times = {k: head.pop(k) for k in ("created_at", "updated_at")}
    return {
        **head,
        "deduction": yuan(case.deduction_fen),
        "reason_code": case.reason_code,
        "reason_text": case.reason_text,
        "buyer": {"ref": case.buyer_ref, "nick": case.buyer_nick},
        "return_waybill": case.return_waybill,
        "carrier": case.carrier,
        "items": [
            {"sku": i.sku, "name": i.name, "qty": i.qty, "unit_price": yuan(i.unit_price_fen)}
            for i in case.items
        ],
        "steps": [_step(ctx, s) for s in case.steps],
        "evidence": [_evidence(ctx, case, e) for e in evidence],
        "events": [_event(ctx, row) for row in events],
        **times,
        "decided_at": iso(ctx, case.decided_at),
        "received_at": iso(ctx, case.received_at),
        "refunded_at": iso(ctx, case.refunded_at),
        "closed_at": iso(ctx, case.closed_at),
        "exchange_waybill": case.exchange_waybill,
        "exchange_carrier": case.exchange_carrier,
    }


def _evidence(ctx: Ctx, case: Case, row: Evidence) -> dict[str, Any]:
    """One piece of evidence; a stored photo with its hash, size and the URL to fetch it
    (`GET /api/cases/{id}/evidence/{sha256}`, the same Bearer token)."""
    entry: dict[str, Any] = {
        "kind": row.kind,
        "ref": row.ref,
        "added_by": row.added_by,
        "at": iso(ctx, row.at),
    }
    if row.sha256:
        entry.update(
            sha256=row.sha256,
            content_type=row.content_type,
            size=row.size,
            url=f"/api/cases/{case.id}/evidence/{row.sha256}",
        )
    return entry
