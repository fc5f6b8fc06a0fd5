"""policy bundles kept by hash (replay against the pinned bundle)

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-04 20:30:00
"""

from __future__ import annotations

import sqlalchemy as sa  # noqa: F401
import sqlmodel.sql.sqltypes  # noqa: F401
from alembic import op  # noqa: F401

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
