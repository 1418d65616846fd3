"""The durable queues: inbound deliveries (dedup keys, unhandled events), the outbox, timers."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    DateTime,
    Index,
    Integer,
    String,
    Text,
)
from sqlalchemy.orm import Mapped, mapped_column

from storage.models.base import Base, BigId


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
        # A destination's rows sent lately (its rate limit).
        Index("ix_outbox_rate", "destination", "status", "sent_at"),
        # A destination's rows in flight (the claim): a seek on the lease, not a walk
        # through every row a rate limit holds for later.
        Index("ix_outbox_flight", "destination", "status", "locked_until"),
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
