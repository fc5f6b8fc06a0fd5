"""contact address index: a send finds its recipient without a scan of every contact

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-05 06:20:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.create_index("ix_contact_email_lower", "contact", [sa.text("lower(email)")], unique=False)


def downgrade() -> None:
    op.drop_index("ix_contact_email_lower", table_name="contact")
