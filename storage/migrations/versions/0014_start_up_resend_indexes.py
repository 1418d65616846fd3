"""start-up resend indexes: the pending steps whose card reached nobody

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-01

At start-up `handlers/approvals.py` `resend_unseen` looks for pending steps with no
card. Without these it scanned every step and, for each, every card: quadratic, so a
server restarted after a busy day (tens of thousands of open cards) spent minutes
before it answered /healthz.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0014"
down_revision: str | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index("ix_card_step", "cards", ["step_id"])
    op.create_index("ix_step_state", "approval_steps", ["state"])


def downgrade() -> None:
    op.drop_index("ix_step_state", table_name="approval_steps")
    op.drop_index("ix_card_step", table_name="cards")
