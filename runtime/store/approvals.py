"""Pending and decided approvals (the inbox)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, Column
from sqlmodel import Field, SQLModel


class Approval(SQLModel, table=True):
    id: str = Field(primary_key=True)
    workflow_id: str = Field(index=True)
    run_key: str = Field(index=True)
    agent: str = Field(index=True)
    account_id: str = Field(index=True)
    action: dict = Field(sa_column=Column(JSON, nullable=False))
    payload_hash: str
    roles: list = Field(sa_column=Column(JSON, nullable=False))
    reasons: list = Field(sa_column=Column(JSON, nullable=False))
    status: str = Field(default="pending", index=True)  # pending|approved|rejected
    created_at: datetime
    due_at: datetime
    decided_by: str | None = None
    decided_at: datetime | None = None
    decision_reason: str | None = None
