"""Events as received: the raw facts behind each account snapshot."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, Column
from sqlmodel import Field, SQLModel


class Event(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    account_id: str = Field(foreign_key="account.id", index=True)
    type: str = Field(index=True)
    occurred_at: datetime
    received_at: datetime
    payload: dict = Field(sa_column=Column(JSON, nullable=False))
    dispatched: bool = False
