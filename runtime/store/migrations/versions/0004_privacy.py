"""privacy: erasure tombstones

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-04 20:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel.sql.sqltypes
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    # Entries written before this revision keep decision_hash NULL: they are verified
    # over their whole payload, as they were hashed. (A store made by create_all already
    # has the column and the table: see migrations.upgrade.)
    inspector = sa.inspect(op.get_bind())
    columns = {c["name"] for c in inspector.get_columns("auditentry")}
    if "decision_hash" not in columns:
        with op.batch_alter_table("auditentry", schema=None) as batch_op:
            batch_op.add_column(
                sa.Column("decision_hash", sqlmodel.sql.sqltypes.AutoString(), nullable=True)
            )
    if "erasure" in inspector.get_table_names():
        return
    op.create_table(
        "erasure",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("actor", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("contact_hash", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("reason", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("counts", sa.JSON(), nullable=False),
        sa.Column("audit_run_key", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("erasure", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_erasure_contact_hash"), ["contact_hash"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("erasure", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_erasure_contact_hash"))
    op.drop_table("erasure")
    with op.batch_alter_table("auditentry", schema=None) as batch_op:
        batch_op.drop_column("decision_hash")
