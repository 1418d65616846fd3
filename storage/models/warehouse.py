"""A return at the warehouse: evidence photos, inspections, unexpected parcels, scanners."""

from __future__ import annotations

from datetime import datetime
from typing import Any

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
