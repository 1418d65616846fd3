"""Settling a held or contested case: proposed deductions and the dispute log."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    BigInteger,
    DateTime,
    ForeignKey,
    Index,
    String,
    Text,
)
from sqlalchemy.orm import Mapped, mapped_column

from storage.models.base import Base, BigId


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
