"""per-organisation audit chains

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-04 23:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel.sql.sqltypes
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    # Entries and checkpoints already written keep org_id NULL: they are the legacy chain,
    # verified as they were hashed and signed (no hash is recomputed here). A store made
    # by create_all already has the columns (see migrations.upgrade).
    inspector = sa.inspect(op.get_bind())
    if "org_id" not in {c["name"] for c in inspector.get_columns("auditentry")}:
        with op.batch_alter_table("auditentry", schema=None) as batch_op:
            batch_op.add_column(
                sa.Column("org_id", sqlmodel.sql.sqltypes.AutoString(), nullable=True)
            )
            batch_op.add_column(sa.Column("org_seq", sa.Integer(), nullable=True))
            batch_op.create_unique_constraint("uq_audit_org_seq", ["org_id", "org_seq"])
            batch_op.create_unique_constraint("uq_audit_org_prev", ["org_id", "prev_hash"])
    if "org_id" not in {c["name"] for c in inspector.get_columns("auditcheckpoint")}:
        with op.batch_alter_table("auditcheckpoint", schema=None) as batch_op:
            batch_op.add_column(
                sa.Column("org_id", sqlmodel.sql.sqltypes.AutoString(), nullable=True)
            )
            batch_op.create_index(batch_op.f("ix_auditcheckpoint_org_id"), ["org_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("auditcheckpoint", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_auditcheckpoint_org_id"))
        batch_op.drop_column("org_id")
    with op.batch_alter_table("auditentry", schema=None) as batch_op:
        batch_op.drop_constraint("uq_audit_org_prev", type_="unique")
        batch_op.drop_constraint("uq_audit_org_seq", type_="unique")
        batch_op.drop_column("org_seq")
        batch_op.drop_column("org_id")
