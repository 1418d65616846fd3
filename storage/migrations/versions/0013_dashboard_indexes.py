"""dashboard indexes: stages that ended in a period, the flagged buyers

Revision ID: 0013
Revises: 0011
Create Date: 2026-12-01

The dashboard's stage times count the cases reviewed (decided_at) and the parcels
that arrived (received_at) in a period, and it lists the flagged buyers in order.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0013"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index("ix_case_decided", "cases", ["decided_at"])
    op.create_index("ix_case_received", "cases", ["received_at"])
    op.create_index("ix_customer_flagged", "customers", ["flagged", "channel", "buyer_ref"])


def downgrade() -> None:
    op.drop_index("ix_customer_flagged", table_name="customers")
    op.drop_index("ix_case_received", table_name="cases")
    op.drop_index("ix_case_decided", table_name="cases")
