"""indexes for every query: the API's pages, the customer history, the claims, the poll

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01

The read API pages newest first in (created_at, id) order, by status, by channel or
all, and `since=` polls range over updated_at; the customer history counts a buyer's
earlier cases by (channel, buyer_ref); the claims walk due rows in their order
(timers by (due_at, id), the outbox by id, inbound events by arrival), and the
outbox finds a destination's rows in flight or sent lately by (destination, status); a
case's evidence and audit trail come in (at, id) order; the console poll finds the
rows changed since its cursor. Indexes that a wider one now leads are replaced by it.
Plain CREATE INDEX (it blocks writes to the table while it builds: seconds at 100k
cases); run the upgrade with the service stopped, as every upgrade.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# (name, table, columns) before and after; a name in both changes its columns.
OLD = [
    ("ix_case_status", "cases", ["status"]),
    ("ix_timer_due", "timers", ["status", "due_at"]),
    ("ix_audit_events_case_id", "audit_events", ["case_id"]),
    ("ix_evidence_case_id", "evidence", ["case_id"]),
    ("ix_outbox_due", "outbox", ["status", "next_at"]),
    ("ix_outbox_rate", "outbox", ["destination", "sent_at"]),
    ("ix_inbound_due", "inbound_events", ["status", "next_at"]),
]
NEW = [
    ("ix_case_created", "cases", ["created_at", "id"]),
    ("ix_case_status_created", "cases", ["status", "created_at", "id"]),
    ("ix_case_channel_created", "cases", ["channel", "created_at", "id"]),
    ("ix_case_updated", "cases", ["updated_at"]),
    ("ix_case_buyer", "cases", ["channel", "buyer_ref"]),
    ("ix_timer_due", "timers", ["status", "due_at", "id"]),
    ("ix_audit_case", "audit_events", ["case_id", "at", "id"]),
    ("ix_evidence_case", "evidence", ["case_id", "at", "id"]),
    ("ix_console_changed", "console_messages", ["user_id", "updated_at"]),
    ("ix_outbox_claim", "outbox", ["status", "id"]),
    ("ix_outbox_rate", "outbox", ["destination", "status", "sent_at"]),
    ("ix_inbound_claim", "inbound_events", ["status", "received_at", "key"]),
]


def _swap(
    drop: list[tuple[str, str, list[str]]], create: list[tuple[str, str, list[str]]]
) -> None:
    for name, table, _ in drop:
        op.drop_index(name, table_name=table)
    for name, table, columns in create:
        op.create_index(name, table, columns, unique=False)


def upgrade() -> None:
    _swap(OLD, NEW)


def downgrade() -> None:
    _swap(NEW, OLD)
