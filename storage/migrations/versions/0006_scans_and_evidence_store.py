"""scans and photos: content-addressed evidence, unexpected parcels, scanner state

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    with op.batch_alter_table("evidence", schema=None) as batch_op:
        batch_op.add_column(sa.Column("sha256", sa.String(length=64), nullable=True))
        batch_op.add_column(
            sa.Column("content_type", sa.String(length=64), nullable=False, server_default="")
        )
        batch_op.add_column(sa.Column("size", sa.BigInteger(), nullable=False, server_default="0"))
        batch_op.create_index("uq_evidence_case_sha", ["case_id", "sha256"], unique=True)
        batch_op.create_index("ix_evidence_sha", ["sha256"], unique=False)
    op.create_table(
        "unexpected_parcels",
        sa.Column("id", BigId, autoincrement=True, nullable=False),
        sa.Column("code", sa.String(length=64), nullable=False),
        sa.Column("scanned", sa.String(length=200), nullable=False),
        sa.Column("note", sa.Text(), nullable=False),
        sa.Column("recorded_by", sa.String(length=64), nullable=False),
        sa.Column("at", sa.DateTime(), nullable=False),
        sa.Column("case_id", sa.String(length=20), nullable=False, server_default=""),
        sa.Column("matched_at", sa.DateTime(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_unexpected_code", "unexpected_parcels", ["code", "case_id"])
    op.create_index("ix_unexpected_open", "unexpected_parcels", ["case_id", "at", "id"])
    op.create_table(
        "scan_states",
        sa.Column("member_id", BigId, nullable=False),
        sa.Column("case_id", sa.String(length=20), nullable=True),
        sa.Column("scanned_at", sa.DateTime(), nullable=True),
        sa.Column("prompt", sa.String(length=16), nullable=False),
        sa.Column("code", sa.String(length=200), nullable=False),
        sa.Column("choices", sa.JSON(), nullable=False),
        sa.Column("asked_at", sa.DateTime(), nullable=True),
        sa.ForeignKeyConstraint(["member_id"], ["members.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("member_id"),
    )


def downgrade() -> None:
    op.drop_table("scan_states")
    op.drop_index("ix_unexpected_open", table_name="unexpected_parcels")
    op.drop_index("ix_unexpected_code", table_name="unexpected_parcels")
    op.drop_table("unexpected_parcels")
    with op.batch_alter_table("evidence", schema=None) as batch_op:
        batch_op.drop_index("ix_evidence_sha")
        batch_op.drop_index("uq_evidence_case_sha")
        batch_op.drop_column("size")
        batch_op.drop_column("content_type")
        batch_op.drop_column("sha256")
