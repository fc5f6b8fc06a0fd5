"""Tool calls keyed by idempotency key: the record that makes side effects happen once."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, Column
from sqlmodel import Field, SQLModel


class ToolCallRecord(SQLModel, table=True):
    idempotency_key: str = Field(primary_key=True)
    tool: str
    args: dict = Field(sa_column=Column(JSON, nullable=False))
    status: str  # started|done|failed
    output: dict = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    error: str | None = None
    attempts: int = 1
    started_at: datetime
    finished_at: datetime | None = None
