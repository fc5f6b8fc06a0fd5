"""the customer's consent choices (unsubscribe, ADMT opt-out, access requests)

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-04 20:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel.sql.sqltypes
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.create_table(
        "consentrecord",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("contact_id", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("account_id", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("email", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("kind", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("choice", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("source", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("consentrecord", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_consentrecord_account_id"), ["account_id"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_consentrecord_at"), ["at"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_consentrecord_contact_id"), ["contact_id"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_consentrecord_email"), ["email"], unique=False)
        batch_op.create_index(batch_op.f("ix_consentrecord_kind"), ["kind"], unique=False)
    # Existing contacts have not opted out of automated decisions: false for the old rows.
    with op.batch_alter_table("contact", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("admt_opted_out", sa.Boolean(), nullable=False, server_default=sa.false())
        )


def downgrade() -> None:
    with op.batch_alter_table("contact", schema=None) as batch_op:
        batch_op.drop_column("admt_opted_out")
    with op.batch_alter_table("consentrecord", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_consentrecord_kind"))
        batch_op.drop_index(batch_op.f("ix_consentrecord_email"))
        batch_op.drop_index(batch_op.f("ix_consentrecord_contact_id"))
        batch_op.drop_index(batch_op.f("ix_consentrecord_at"))
        batch_op.drop_index(batch_op.f("ix_consentrecord_account_id"))
    op.drop_table("consentrecord")
