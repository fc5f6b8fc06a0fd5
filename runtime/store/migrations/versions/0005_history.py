"""history: subscriptions, per-organisation segments and modules, the history import
ledger, and the account's start date

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-04 21:20:00
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel.sql.sqltypes
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    # A store made by create_all already has these (see migrations.upgrade).
    inspector = sa.inspect(op.get_bind())
    if "started_on" not in {c["name"] for c in inspector.get_columns("account")}:
        with op.batch_alter_table("account", schema=None) as batch_op:
            batch_op.add_column(sa.Column("started_on", sa.Date(), nullable=True))
    tables = set(inspector.get_table_names())
    if "subscription" not in tables:
        op.create_table(
            "subscription",
            sa.Column("id", sa.Integer(), nullable=False),
            sa.Column("account_id", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
            sa.Column("product", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
            sa.Column("mrr", sa.Float(), nullable=False),
            sa.Column("quantity", sa.Integer(), nullable=False),
            sa.Column("start", sa.Date(), nullable=False),
            sa.Column("end", sa.Date(), nullable=True),
            sa.Column("billing_period", sa.Integer(), nullable=False),
            sa.ForeignKeyConstraint(["account_id"], ["account.id"]),
            sa.PrimaryKeyConstraint("id"),
            sa.UniqueConstraint("account_id", "product", "start", name="uq_subscription"),
        )
        with op.batch_alter_table("subscription", schema=None) as batch_op:
            batch_op.create_index(
                batch_op.f("ix_subscription_account_id"), ["account_id"], unique=False
            )
    if "orgconfig" not in tables:
        op.create_table(
            "orgconfig",
            sa.Column("org_id", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
            sa.Column("segments", sa.JSON(), nullable=False),
            sa.Column("modules", sa.JSON(), nullable=False),
            sa.PrimaryKeyConstraint("org_id"),
        )
    if "historybatch" not in tables:
        op.create_table(
            "historybatch",
            sa.Column("id", sa.Integer(), nullable=False),
            sa.Column("org_id", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
            sa.Column("source", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
            sa.Column("digest", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
            sa.Column("batch", sa.Integer(), nullable=False),
            sa.Column("rows", sa.Integer(), nullable=False),
            sa.Column("days", sa.Integer(), nullable=False),
            sa.Column("at", sa.DateTime(timezone=True), nullable=False),
            sa.PrimaryKeyConstraint("id"),
            sa.UniqueConstraint("digest", "batch", name="uq_history_batch"),
        )
        with op.batch_alter_table("historybatch", schema=None) as batch_op:
            batch_op.create_index(batch_op.f("ix_historybatch_digest"), ["digest"], unique=False)
            batch_op.create_index(batch_op.f("ix_historybatch_org_id"), ["org_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("historybatch", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_historybatch_org_id"))
        batch_op.drop_index(batch_op.f("ix_historybatch_digest"))
    op.drop_table("historybatch")
    op.drop_table("orgconfig")
    with op.batch_alter_table("subscription", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_subscription_account_id"))
    op.drop_table("subscription")
    with op.batch_alter_table("account", schema=None) as batch_op:
        batch_op.drop_column("started_on")
