"""SQLAlchemy 2 models: the one schema both SQLite and PostgreSQL run.

Money is integer fen; channel ids are strings; every timestamp is stored as
naive UTC (SQLite has no zone type) and converted at the edges.

The tables live in one module per area; importing this package registers all
of them on `Base.metadata` (what alembic compares against), and every model is
importable from here as before.
"""

from __future__ import annotations

from storage.models.base import Base, BigId
from storage.models.cases import ApprovalStep, AuditEvent, Case, CaseItem
from storage.models.chat import CardRecord, ConsoleMessage, PendingReply
from storage.models.disputes import DisputeEvent, Resolution
from storage.models.people import Customer, CustomerOrder, Member, MemberRole
from storage.models.queues import InboundEvent, InboxKey, OutboxMessage, Timer
from storage.models.system import ChannelState, Lease, Sequence, ServerSecret
from storage.models.warehouse import Evidence, Inspection, ScanState, UnexpectedParcel

__all__ = [
    "ApprovalStep",
    "AuditEvent",
    "Base",
    "BigId",
    "CardRecord",
    "Case",
    "CaseItem",
    "ChannelState",
    "ConsoleMessage",
    "Customer",
    "CustomerOrder",
    "DisputeEvent",
    "Evidence",
    "InboundEvent",
    "InboxKey",
    "Inspection",
    "Lease",
    "Member",
    "MemberRole",
    "OutboxMessage",
    "PendingReply",
    "Resolution",
    "ScanState",
    "Sequence",
    "ServerSecret",
    "Timer",
    "UnexpectedParcel",
]
