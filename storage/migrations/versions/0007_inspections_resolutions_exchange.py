"""inspections, deduction resolutions, exchange waybills, abuse-flag clearing

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-01
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "inspections",
        sa.Column("id", BIG_ID, autoincrement=True, nullable=False),
        sa.Column("case_id", sa.String(length=20), nullable=False),
        sa.Column("channel", sa.String(length=20), nullable=False),
        sa.Column("buyer_ref", sa.String(length=64), nullable=False),
        sa.Column("outcome", sa.String(length=16), nullable=False),
        sa.Column("detail", sa.Text(), nullable=False),
        sa.Column("inspector", sa.String(length=64), nullable=False),
        sa.Column("at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(["case_id"], ["cases.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(
        "ix_inspection_buyer", "inspections", ["channel", "buyer_ref", "outcome", "at"]
    )
    op.create_index("ix_inspection_case", "inspections", ["case_id", "id"])
    op.create_table(
        "resolutions",
        sa.Column("id", BIG_ID, autoincrement=True, nullable=False),
        sa.Column("case_id", sa.String(length=20), nullable=False),
        sa.Column("deduction_fen", sa.BigInteger(), nullable=False),
        sa.Column("part", sa.String(length=64), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("state", sa.String(length=12), nullable=False),
        sa.Column("proposed_by", sa.String(length=64), nullable=False),
        sa.Column("proposed_at", sa.DateTime(), nullable=False),
        sa.Column("decided_by", sa.String(length=64), nullable=False),
        sa.Column("decided_at", sa.DateTime(), nullable=True),
        sa.ForeignKeyConstraint(["case_id"], ["cases.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_resolution_case", "resolutions", ["case_id", "state", "id"])
    with op.batch_alter_table("cases") as batch:
        batch.add_column(sa.Column("exchange_waybill", sa.String(length=64), nullable=True))
        batch.add_column(sa.Column("exchange_carrier", sa.String(length=32), nullable=True))
    with op.batch_alter_table("customers") as batch:
        batch.add_column(sa.Column("flag_cleared_at", sa.DateTime(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("customers") as batch:
        batch.drop_column("flag_cleared_at")
    with op.batch_alter_table("cases") as batch:
        batch.drop_column("exchange_carrier")
        batch.drop_column("exchange_waybill")
    op.drop_index("ix_resolution_case", table_name="resolutions")
    op.drop_table("resolutions")
    op.drop_index("ix_inspection_case", table_name="inspections")
    op.drop_index("ix_inspection_buyer", table_name="inspections")
    op.drop_table("inspections")
