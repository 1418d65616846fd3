"""sla clock: the channel's own deadline, the current stage's due time, breaches

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-01
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("cases") as batch:
        batch.add_column(sa.Column("channel_deadline_at", sa.DateTime(), nullable=True))
        batch.add_column(sa.Column("sla_due_at", sa.DateTime(), nullable=True))
        batch.add_column(
            sa.Column("sla_breached", sa.Boolean(), nullable=False, server_default=sa.false())
        )


def downgrade() -> None:
    with op.batch_alter_table("cases") as batch:
        batch.drop_column("sla_breached")
        batch.drop_column("sla_due_at")
        batch.drop_column("channel_deadline_at")
