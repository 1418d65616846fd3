"""Who takes part: team members with their roles, buyers with their purchase history."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    BigInteger,
    Boolean,
    DateTime,
    ForeignKey,
    Index,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from storage.models.base import Base, BigId


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
