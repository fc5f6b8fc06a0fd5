"""privacy: erasure tombstones

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-04 20:30:00
"""

from __future__ import annotations

import sqlalchemy as sa  # noqa: F401
import sqlmodel.sql.sqltypes  # noqa: F401
from alembic import op  # noqa: F401

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
