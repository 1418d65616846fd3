"""dispute_events: scripts pulled and outcomes recorded; indexes for /统计

Revision ID: 0008
Revises: 0005
Create Date: 2026-12-01
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "dispute_events",
        sa.Column("id", BigId, autoincrement=True, nullable=False),
        sa.Column("case_id", sa.String(length=20), nullable=False),
        sa.Column("kind", sa.String(length=12), nullable=False),
        sa.Column("scenario", sa.String(length=64), nullable=False),
        sa.Column("outcome", sa.String(length=16), nullable=False),
        sa.Column("amount_fen", sa.BigInteger(), nullable=True),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("actor", sa.String(length=64), nullable=False),
        sa.Column("at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(["case_id"], ["cases.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_dispute_case", "dispute_events", ["case_id", "id"])
    op.create_index("ix_dispute_kind_at", "dispute_events", ["kind", "at"])
    op.create_index("ix_case_refunded", "cases", ["refunded_at"])
    op.create_index("ix_step_due", "approval_steps", ["due_at"])


def downgrade() -> None:
    op.drop_index("ix_step_due", table_name="approval_steps")
    op.drop_index("ix_case_refunded", table_name="cases")
    op.drop_index("ix_dispute_kind_at", table_name="dispute_events")
    op.drop_index("ix_dispute_case", table_name="dispute_events")
    op.drop_table("dispute_events")
