"""inbox list indexes: the costliest-first sort reads the page from an index

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-04 23:30:00
"""

from __future__ import annotations

from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    with op.batch_alter_table("approval", schema=None) as batch_op:
        batch_op.create_index(
            "ix_approval_inbox_value", ["org_id", "status", "value"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("approval", schema=None) as batch_op:
        batch_op.drop_index("ix_approval_inbox_value")
