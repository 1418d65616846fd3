"""outbox in-flight index: the claim's check for a destination's leased rows

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-01

Before claiming a rate-limited destination's row, `storage/outbox.py` `claim_due` asks
whether any of that destination's pending rows is leased. Served by `ix_outbox_rate`
(destination, status, sent_at), that walked every pending row of the destination,
and a member's rows held for WeCom's next window number thousands under load: with
a backlog the claim's one statement took 20-80 ms, on the event loop on SQLite.
This index makes it a seek on `locked_until`.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0015"
down_revision: str | None = "0014"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index("ix_outbox_flight", "outbox", ["destination", "status", "locked_until"])


def downgrade() -> None:
    op.drop_index("ix_outbox_flight", table_name="outbox")
