"""What the bot showed in chat: cards per recipient, the console log, pending questions."""

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


class CardRecord(Base):
    """A card shown to one recipient, so every copy can be updated after a decision."""

    __tablename__ = "cards"
    __table_args__ = (
        Index("ix_card_case", "case_id", "kind"),
        Index("ix_card_step", "step_id"),  # start-up: the steps no card reached
    )

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
