"""SQLAlchemy 2 models: the one schema both SQLite and PostgreSQL run.

Money is integer fen; channel ids are strings; every timestamp is stored as
naive UTC (SQLite has no zone type) and converted at the edges.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    false,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

# SQLite only auto-increments INTEGER PRIMARY KEY; PostgreSQL wants BIGINT.
BigId = BigInteger().with_variant(Integer(), "sqlite")


class Base(DeclarativeBase):
    type_annotation_map = {dict[str, Any]: JSON, list[Any]: JSON}


class Case(Base):
    """A return request (售后单), keyed by (channel, shop, external_id)."""

    __tablename__ = "cases"
    __table_args__ = (
        UniqueConstraint("channel", "shop", "external_id", name="uq_case_external"),
        # The API's newest-first pages, each filter walking an index in (created_at, id)
        # order from its equality; `since=` polls range over updated_at (bot/web/api.py).
        Index("ix_case_created", "created_at", "id"),
        Index("ix_case_status_created", "status", "created_at", "id"),
        Index("ix_case_channel_created", "channel", "created_at", "id"),
        Index("ix_case_updated", "updated_at"),
        Index("ix_case_buyer", "channel", "buyer_ref"),  # the customer history
        Index("ix_case_order", "order_id"),
        Index("ix_case_waybill", "return_waybill"),
        Index("ix_case_refunded", "refunded_at"),  # /统计 refunds in a period
        # The dashboard's stage times: the stages that ended in a period (reviewed, arrived).
        Index("ix_case_decided", "decided_at"),
        Index("ix_case_received", "received_at"),
    )

    id: Mapped[str] = mapped_column(String(20), primary_key=True)
    channel: Mapped[str] = mapped_column(String(20))
    shop: Mapped[str] = mapped_column(String(64))
    external_id: Mapped[str] = mapped_column(String(64))
    order_id: Mapped[str] = mapped_column(String(64))
    kind: Mapped[str] = mapped_column(String(20))
    reason_code: Mapped[str] = mapped_column(String(64), default="")
    reason_text: Mapped[str] = mapped_column(Text, default="")
    amount_fen: Mapped[int] = mapped_column(BigInteger)
    refund_fen: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    deduction_fen: Mapped[int] = mapped_column(BigInteger, default=0)
    currency: Mapped[str] = mapped_column(String(3), default="CNY")
    buyer_ref: Mapped[str] = mapped_column(String(64), default="")
    buyer_nick: Mapped[str] = mapped_column(String(64), default="")
    return_waybill: Mapped[str | None] = mapped_column(String(64), nullable=True)
    carrier: Mapped[str | None] = mapped_column(String(32), nullable=True)
    tier: Mapped[str] = mapped_column(String(32), default="")
    attachments: Mapped[list[Any]] = mapped_column(default=list)
    sla_policy: Mapped[str] = mapped_column(String(32), default="")
    status: Mapped[str] = mapped_column(String(20))
    current_step: Mapped[int] = mapped_column(Integer, default=0)
    channel_version: Mapped[str] = mapped_column(String(32), default="")
    raised_by: Mapped[int | None] = mapped_column(ForeignKey("members.id"), nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime)
    updated_at: Mapped[datetime] = mapped_column(DateTime)
    decided_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    received_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    refunded_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    closed_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    version: Mapped[int] = mapped_column(Integer, nullable=False)
    # The replacement parcel of an exchange, as the channel reported it (handlers/exchange.py).
    exchange_waybill: Mapped[str | None] = mapped_column(String(64), nullable=True)
    exchange_carrier: Mapped[str | None] = mapped_column(String(32), nullable=True)
    # When the channel acts by itself (e.g. agrees the refund); the SLA stays ahead of it.
    channel_deadline_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    # The current stage's SLA due time, and whether any stage ran past its due (handlers/sla.py).
    sla_due_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    sla_breached: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())

    items: Mapped[list[CaseItem]] = relationship(
        back_populates="case", order_by="CaseItem.id", cascade="all, delete-orphan"
    )
    steps: Mapped[list[ApprovalStep]] = relationship(
        back_populates="case", order_by="ApprovalStep.seq", cascade="all, delete-orphan"
    )

    # Optimistic lock: every UPDATE carries "WHERE version = :old" and bumps it.
    __mapper_args__ = {"version_id_col": version}


class CaseItem(Base):
    __tablename__ = "case_items"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    case_id: Mapped[str] = mapped_column(ForeignKey("cases.id", ondelete="CASCADE"), index=True)
    sku: Mapped[str] = mapped_column(String(64))
    name: Mapped[str] = mapped_column(String(128))
    qty: Mapped[int] = mapped_column(Integer)
    unit_price_fen: Mapped[int] = mapped_column(BigInteger)
    category: Mapped[str] = mapped_column(String(64), default="")

    case: Mapped[Case] = relationship(back_populates="items")


class ApprovalStep(Base):
    """One step of a (possibly multi-step) approval; `seq` orders them."""

    __tablename__ = "approval_steps"
    __table_args__ = (
        UniqueConstraint("case_id", "seq", name="uq_step_seq"),
        Index("ix_step_due", "due_at"),  # /统计 SLA breaches in a period
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    case_id: Mapped[str] = mapped_column(ForeignKey("cases.id", ondelete="CASCADE"))
    seq: Mapped[int] = mapped_column(Integer)
    role: Mapped[str] = mapped_column(String(32))
    # waiting (a later step) | pending (current) | approved | rejected | cancelled (case closed)
    state: Mapped[str] = mapped_column(String(16), default="waiting")
    assignee_id: Mapped[int | None] = mapped_column(ForeignKey("members.id"), nullable=True)
    actor_id: Mapped[int | None] = mapped_column(ForeignKey("members.id"), nullable=True)
    reason: Mapped[str] = mapped_column(Text, default="")
    opened_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    due_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    decided_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)

    case: Mapped[Case] = relationship(back_populates="steps")
    actor: Mapped[Member | None] = relationship(foreign_keys=[actor_id], lazy="joined")
    assignee: Mapped[Member | None] = relationship(foreign_keys=[assignee_id], lazy="joined")


class AuditEvent(Base):
    """The audit trail: who, when, from, to, why. Refusals are recorded too."""

    __tablename__ = "audit_events"
    __table_args__ = (Index("ix_audit_case", "case_id", "at", "id"),)  # a case's trail, in order

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    case_id: Mapped[str | None] = mapped_column(String(20), nullable=True)
    at: Mapped[datetime] = mapped_column(DateTime)
    actor: Mapped[str] = mapped_column(String(64))
    action: Mapped[str] = mapped_column(String(32))
    from_status: Mapped[str] = mapped_column(String(20), default="")
    to_status: Mapped[str] = mapped_column(String(20), default="")
    detail: Mapped[str] = mapped_column(Text, default="")


class Member(Base):
    __tablename__ = "members"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    wecom_userid: Mapped[str | None] = mapped_column(String(64), unique=True, nullable=True)
    dingtalk_staff_id: Mapped[str | None] = mapped_column(String(64), unique=True, nullable=True)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    # Comma-separated platforms the member's cards and texts go to; NULL: all they are on.
    platforms: Mapped[str | None] = mapped_column(String(64), nullable=True)

    roles: Mapped[list[MemberRole]] = relationship(cascade="all, delete-orphan", lazy="selectin")

    @property
    def role_names(self) -> set[str]:
        return {r.role for r in self.roles}


class MemberRole(Base):
    __tablename__ = "member_roles"

    member_id: Mapped[int] = mapped_column(
        ForeignKey("members.id", ondelete="CASCADE"), primary_key=True
    )
    role: Mapped[str] = mapped_column(String(32), primary_key=True)


class Customer(Base):
    __tablename__ = "customers"
    __table_args__ = (
        UniqueConstraint("channel", "buyer_ref", name="uq_customer"),
        Index("ix_customer_flagged", "flagged", "channel", "buyer_ref"),  # the dashboard's list
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    channel: Mapped[str] = mapped_column(String(20))
    buyer_ref: Mapped[str] = mapped_column(String(64))
    nick: Mapped[str] = mapped_column(String(64), default="")
    flagged: Mapped[bool] = mapped_column(Boolean, default=False)
    flag_reason: Mapped[str] = mapped_column(Text, default="")
    # When risk last cleared the flag: incidents before it no longer count (handlers/abuse.py).
    flag_cleared_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)


class CustomerOrder(Base):
    """Purchase history, imported from the shop; feeds the director-tier card."""

    __tablename__ = "customer_orders"
    __table_args__ = (UniqueConstraint("customer_id", "order_id", name="uq_customer_order"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    customer_id: Mapped[int] = mapped_column(ForeignKey("customers.id", ondelete="CASCADE"))
    order_id: Mapped[str] = mapped_column(String(64))
    amount_fen: Mapped[int] = mapped_column(BigInteger)
    ordered_at: Mapped[datetime] = mapped_column(DateTime)


class InboxKey(Base):
    """One row per inbound delivery; written in the transaction of its effects."""

    __tablename__ = "inbox_keys"

    key: Mapped[str] = mapped_column(String(255), primary_key=True)
    source: Mapped[str] = mapped_column(String(32))
    case_id: Mapped[str | None] = mapped_column(String(20), nullable=True)
    received_at: Mapped[datetime] = mapped_column(DateTime)


class InboundEvent(Base):
    """An acknowledged inbound event not yet handled: the platform got its 200, so a
    crash before the handler commits must not lose it. The handler's transaction
    deletes the row; the clock re-runs rows left behind."""

    __tablename__ = "inbound_events"
    # The claim walks pending rows oldest first (storage/inbound.py).
    __table_args__ = (Index("ix_inbound_claim", "status", "received_at", "key"),)

    key: Mapped[str] = mapped_column(String(255), primary_key=True)
    kind: Mapped[str] = mapped_column(String(32))
    payload: Mapped[dict[str, Any]] = mapped_column(default=dict)
    status: Mapped[str] = mapped_column(String(8), default="pending")  # pending | dead
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_at: Mapped[datetime] = mapped_column(DateTime)
    received_at: Mapped[datetime] = mapped_column(DateTime)
    last_error: Mapped[str] = mapped_column(Text, default="")


class OutboxMessage(Base):
    """A side effect waiting to leave: a card, a card update, a callback, a refund."""

    __tablename__ = "outbox"
    __table_args__ = (
        # The claim walks pending rows in id order; dead letters and the depth gauge too.
        Index("ix_outbox_claim", "status", "id"),
        # A destination's rows in flight (the claim) and sent lately (its rate limit).
        Index("ix_outbox_rate", "destination", "status", "sent_at"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    kind: Mapped[str] = mapped_column(String(32))
    destination: Mapped[str] = mapped_column(String(128))
    case_id: Mapped[str | None] = mapped_column(String(20), nullable=True, index=True)
    payload: Mapped[dict[str, Any]] = mapped_column(default=dict)
    # pending | sent | dead | void
    status: Mapped[str] = mapped_column(String(8), default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_at: Mapped[datetime] = mapped_column(DateTime)
    locked_until: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    last_error: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(DateTime)
    sent_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    # Far-side messages the delivery used (a long text is several, coalesced texts
    # after the first none): what the per-destination rate limits add up.
    sends: Mapped[int] = mapped_column(Integer, default=1, server_default="1")
    # The first failed attempt since the row was written or revived: retries give
    # up `give_up_after_hours` after it, however many attempts that took.
    failing_since: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)


class Timer(Base):
    """A durable timer (SLA reminder, escalation); the clock claims due rows."""

    __tablename__ = "timers"
    __table_args__ = (Index("ix_timer_due", "status", "due_at", "id"),)  # claims, in order

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    case_id: Mapped[str] = mapped_column(String(20), index=True)
    step_id: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    kind: Mapped[str] = mapped_column(String(32))
    due_at: Mapped[datetime] = mapped_column(DateTime)
    # pending | fired | cancelled
    status: Mapped[str] = mapped_column(String(12), default="pending")
    payload: Mapped[dict[str, Any]] = mapped_column(default=dict)


class Evidence(Base):
    __tablename__ = "evidence"
    __table_args__ = (
        Index("ix_evidence_case", "case_id", "at", "id"),
        Index("uq_evidence_case_sha", "case_id", "sha256", unique=True),
        Index("ix_evidence_sha", "sha256"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    case_id: Mapped[str] = mapped_column(ForeignKey("cases.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(16))  # photo | url | note
    ref: Mapped[str] = mapped_column(Text)
    added_by: Mapped[str] = mapped_column(String(64))
    at: Mapped[datetime] = mapped_column(DateTime)
    # A photo in the content-addressed store (storage/evidence.py): its SHA-256 names
    # the file; one case holds the same bytes once.
    sha256: Mapped[str | None] = mapped_column(String(64), nullable=True)
    content_type: Mapped[str] = mapped_column(String(64), default="")
    size: Mapped[int] = mapped_column(BigInteger, default=0)


class CardRecord(Base):
    """A card shown to one recipient, so every copy can be updated after a decision."""

    __tablename__ = "cards"
    __table_args__ = (Index("ix_card_case", "case_id", "kind"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    case_id: Mapped[str] = mapped_column(String(20))
    step_id: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    kind: Mapped[str] = mapped_column(String(16))  # approval | inspection | notice | risk
    platform: Mapped[str] = mapped_column(String(16))
    recipient: Mapped[str] = mapped_column(String(128))  # platform user id or chat id
    # platform handle for updates (WeCom response_code, DingTalk outTrackId, …)
    platform_ref: Mapped[str] = mapped_column(Text, default="")
    state: Mapped[str] = mapped_column(String(12), default="open")  # open | closed
    card: Mapped[dict[str, Any]] = mapped_column(default=dict)  # the neutral Card as last sent
    created_at: Mapped[datetime] = mapped_column(DateTime)
    updated_at: Mapped[datetime] = mapped_column(DateTime)


class ConsoleMessage(Base):
    """The local console platform's chat log (what the bot showed each member)."""

    __tablename__ = "console_messages"
    __table_args__ = (
        Index("ix_console_user", "user_id", "id"),
        Index("ix_console_changed", "user_id", "updated_at"),  # the poll's changed rows
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    user_id: Mapped[str] = mapped_column(String(64))
    direction: Mapped[str] = mapped_column(String(4))  # in | out
    card_id: Mapped[int | None] = mapped_column(BigInteger, nullable=True, index=True)
    body: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[datetime] = mapped_column(DateTime)
    updated_at: Mapped[datetime] = mapped_column(DateTime)


class PendingReply(Base):
    """A question the bot asked in chat (e.g. the reason for a 驳回 clicked on a card,
    which cannot carry a text box); the member's next plain message answers it."""

    __tablename__ = "pending_replies"

    member_id: Mapped[int] = mapped_column(
        ForeignKey("members.id", ondelete="CASCADE"), primary_key=True
    )
    case_id: Mapped[str] = mapped_column(String(20))
    step_id: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    action: Mapped[str] = mapped_column(String(16))
    asked_at: Mapped[datetime] = mapped_column(DateTime)


class Sequence(Base):
    """Per-day counters for RC-YYMMDD-NNNN ids (portable across both databases)."""

    __tablename__ = "sequences"

    name: Mapped[str] = mapped_column(String(32), primary_key=True)
    value: Mapped[int] = mapped_column(Integer, default=0)


class ServerSecret(Base):
    """The secrets that sign card-button tokens and API cursors, shared by every replica.

    `current` signs; `retired:<sha256 prefix>` rows are earlier ones that still verify
    until `retired_at` + server.secret_grace_days; `legacy_tokens` records when the
    first card-token format stopped being issued (storage/secrets.py).
    """

    __tablename__ = "server_secrets"

    name: Mapped[str] = mapped_column(String(48), primary_key=True)
    value: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(DateTime)
    retired_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)


class Lease(Base):
    """Which process holds a job that must run in exactly one place (storage/leases.py)."""

    __tablename__ = "leases"

    name: Mapped[str] = mapped_column(String(128), primary_key=True)
    holder: Mapped[str] = mapped_column(String(128))
    expires_at: Mapped[datetime] = mapped_column(DateTime)


class ChannelState(Base):
    """What a marketplace channel must remember across restarts and replicas: a
    poller's cursor (`cursor:<channel>:<shop>`), a refreshed token
    (`token:<channel>:<shop>`); see storage/channel_state.py."""

    __tablename__ = "channel_state"

    name: Mapped[str] = mapped_column(String(160), primary_key=True)
    value: Mapped[dict[str, Any]] = mapped_column(default=dict)
    updated_at: Mapped[datetime] = mapped_column(DateTime)


class Inspection(Base):
    """One inspection result of a returned parcel; the buyer's anomalies by kind are
    counted from these rows (handlers/abuse.py), so they carry the buyer."""

    __tablename__ = "inspections"
    __table_args__ = (
        Index("ix_inspection_buyer", "channel", "buyer_ref", "outcome", "at"),
        Index("ix_inspection_case", "case_id", "id"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    case_id: Mapped[str] = mapped_column(ForeignKey("cases.id", ondelete="CASCADE"))
    channel: Mapped[str] = mapped_column(String(20))
    buyer_ref: Mapped[str] = mapped_column(String(64))
    outcome: Mapped[str] = mapped_column(String(16))  # ok | damaged | missing_parts | …
    detail: Mapped[str] = mapped_column(Text, default="")  # the part or damage named
    inspector: Mapped[str] = mapped_column(String(64))
    at: Mapped[datetime] = mapped_column(DateTime)


class Resolution(Base):
    """A refund-minus-deduction proposed for a held case, waiting for its confirmation
    (handlers/resolve.py): the amount is confirmed on a second card before money moves."""

    __tablename__ = "resolutions"
    __table_args__ = (Index("ix_resolution_case", "case_id", "state", "id"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    case_id: Mapped[str] = mapped_column(ForeignKey("cases.id", ondelete="CASCADE"))
    deduction_fen: Mapped[int] = mapped_column(BigInteger)
    part: Mapped[str] = mapped_column(String(64), default="")  # from the price list, or ""
    reason: Mapped[str] = mapped_column(Text, default="")
    state: Mapped[str] = mapped_column(String(12), default="proposed")  # … confirmed | discarded
    proposed_by: Mapped[str] = mapped_column(String(64))
    proposed_at: Mapped[datetime] = mapped_column(DateTime)
    decided_by: Mapped[str] = mapped_column(String(64), default="")
    decided_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)


class DisputeEvent(Base):
    """A dispute on a case, as it happened: every script pulled (who, when, which
    scenario, the exact text) and every outcome recorded (handlers/disputes.py)."""

    __tablename__ = "dispute_events"
    __table_args__ = (
        Index("ix_dispute_case", "case_id", "id"),  # a case's disputes, in order
        Index("ix_dispute_kind_at", "kind", "at"),  # /统计 by scenario and outcome
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    case_id: Mapped[str] = mapped_column(ForeignKey("cases.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(12))  # script | outcome
    scenario: Mapped[str] = mapped_column(String(64), default="")
    outcome: Mapped[str] = mapped_column(String(16), default="")  # agreed | refused | escalated
    amount_fen: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    text: Mapped[str] = mapped_column(Text, default="")
    actor: Mapped[str] = mapped_column(String(64))
    at: Mapped[datetime] = mapped_column(DateTime)


class UnexpectedParcel(Base):
    """A parcel the warehouse scanned that matched no case (意外包裹): kept, searchable
    by its code, and matched when a case with that waybill or order id comes in."""

    __tablename__ = "unexpected_parcels"
    __table_args__ = (
        Index("ix_unexpected_code", "code", "case_id"),
        Index("ix_unexpected_open", "case_id", "at", "id"),  # the unmatched, newest first
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    code: Mapped[str] = mapped_column(String(64))  # the normalized waybill / order number
    scanned: Mapped[str] = mapped_column(String(200))  # what was typed or decoded
    note: Mapped[str] = mapped_column(Text, default="")
    recorded_by: Mapped[str] = mapped_column(String(64))  # member name
    at: Mapped[datetime] = mapped_column(DateTime)
    case_id: Mapped[str] = mapped_column(String(20), default="")  # "" until matched
    matched_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)


class ScanState(Base):
    """A warehouse member's scanner: the case in hand (the last one scanned, which a
    photo without a code is evidence for), and what the last scan asked (pick one of
    several cases, or record an unexpected parcel), answered by the next message."""

    __tablename__ = "scan_states"

    member_id: Mapped[int] = mapped_column(
        ForeignKey("members.id", ondelete="CASCADE"), primary_key=True
    )
    case_id: Mapped[str | None] = mapped_column(String(20), nullable=True)
    scanned_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    prompt: Mapped[str] = mapped_column(String(16), default="")  # "" | pick | unexpected
    code: Mapped[str] = mapped_column(String(200), default="")
    choices: Mapped[list[Any]] = mapped_column(default=list)  # case ids, in the order shown
    asked_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
