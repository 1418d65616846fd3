"""The state machine table: who may fire what, from where, and what it writes."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from handlers.workflow import (
    FINAL,
    OPEN,
    SYSTEM_ACTOR,
    TRANSITIONS,
    Actor,
    Refusal,
    Status,
    fire,
    must,
)
from storage.models import AuditEvent, Case

NOW = datetime(2026, 11, 21, 2, 0, tzinfo=UTC).replace(tzinfo=None)


def case(status: Status, raised_by: int | None = None) -> Case:
    return Case(
        id="RC-261121-0001",
        status=status.value,
        raised_by=raised_by,
        version=1,
        decided_at=None,
        received_at=None,
        refunded_at=None,
        closed_at=None,
    )


def member(*roles: str, member_id: int = 7) -> Actor:
    return Actor("member", "王组长", member_id, frozenset(roles))


CHANNEL = Actor("channel", "generic")


def test_every_state_is_reachable_and_final_states_have_no_exit() -> None:
    targets = {t.target for t in TRANSITIONS.values()} | {Status.REQUESTED}
    assert targets == set(Status)
    for name, t in TRANSITIONS.items():
        assert not (t.sources & FINAL), f"{name} leaves a final state"


def test_fire_moves_stamps_and_audits() -> None:
    c = case(Status.PENDING_APPROVAL)
    row = fire(c, "approve", member("cs_lead"), NOW, step_role="cs_lead", why="ok")
    assert isinstance(row, AuditEvent)
    assert (row.from_status, row.to_status, row.actor) == (
        "pending_approval",
        "approved",
        "member:王组长",
    )
    assert c.status == "approved" and c.decided_at == NOW and c.updated_at == NOW


@pytest.mark.parametrize(
    ("status", "name", "actor", "role", "allowed"),
    [
        (Status.REQUESTED, "auto_approve", SYSTEM_ACTOR, None, True),
        (Status.REQUESTED, "auto_approve", member("admin"), None, False),
        (Status.PENDING_APPROVAL, "approve", member("cs_lead"), "cs_lead", True),
        (Status.PENDING_APPROVAL, "approve", member("cs_agent"), "cs_lead", False),
        (Status.PENDING_APPROVAL, "approve", member("ops_director"), "cs_lead", False),
        (Status.APPROVED, "approve", member("cs_lead"), "cs_lead", False),
        (Status.REJECTED, "reject", member("cs_lead"), "cs_lead", False),
        (Status.AWAITING_RETURN, "buyer_shipped", CHANNEL, None, True),
        (Status.AWAITING_RETURN, "buyer_shipped", member("warehouse"), None, False),
        (Status.IN_TRANSIT, "receive", member("warehouse"), None, True),
        (Status.AWAITING_RETURN, "receive", member("warehouse"), None, True),
        (Status.IN_TRANSIT, "receive", member("cs_agent"), None, False),
        (Status.IN_TRANSIT, "receive", member("admin"), None, True),
        (Status.RECEIVED, "inspect_anomaly", member("warehouse"), None, True),
        (Status.ON_HOLD, "resolve_refund", member("risk"), None, True),
        (Status.ON_HOLD, "resolve_refund", member("warehouse"), None, False),
        (Status.REFUND_PENDING, "refunded", CHANNEL, None, True),
        (Status.REFUNDED, "close", CHANNEL, None, False),
        (Status.IN_TRANSIT, "close", CHANNEL, None, True),
    ],
)
def test_who_may_fire(
    status: Status, name: str, actor: Actor, role: str | None, allowed: bool
) -> None:
    c = case(status)
    result = fire(c, name, actor, NOW, step_role=role)
    assert isinstance(result, AuditEvent) is allowed
    if not allowed:
        assert isinstance(result, Refusal) and result.reason
        assert c.status == status.value, "a refusal changes nothing"


def test_nobody_approves_their_own_case() -> None:
    c = case(Status.PENDING_APPROVAL, raised_by=7)
    result = fire(c, "approve", member("cs_lead", member_id=7), NOW, step_role="cs_lead")
    assert isinstance(result, Refusal) and "自己" in result.reason
    other = fire(c, "approve", member("cs_lead", member_id=8), NOW, step_role="cs_lead")
    assert isinstance(other, AuditEvent)


def test_close_from_every_open_state_only() -> None:
    for status in Status:
        c = case(status)
        assert isinstance(fire(c, "close", CHANNEL, NOW), AuditEvent) is (status in OPEN)


def test_must_raises_on_a_refused_system_move() -> None:
    with pytest.raises(RuntimeError, match="refused"):
        must(fire(case(Status.REFUNDED), "auto_approve", SYSTEM_ACTOR, NOW))
