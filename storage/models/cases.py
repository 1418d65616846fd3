"""Returns (售后单): the case, its items, its approval steps and its audit trail."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import (
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
from sqlalchemy.orm import Mapped, mapped_column, relationship

from storage.models.base import Base, BigId

if TYPE_CHECKING:
    from storage.models.people import Member


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
        Index("ix_step_state", "state"),  # start-up: the pending steps no card reached
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
