"""Process-wide state: id sequences, server secrets, leases and channel state."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    DateTime,
    Integer,
    String,
    Text,
)
from sqlalchemy.orm import Mapped, mapped_column

from storage.models.base import Base


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
