"""What connectors write into the store: in-app messages (the product's app reads this
outbox) and CSM tasks."""

from __future__ import annotations

from datetime import datetime

from sqlmodel import Field, SQLModel


class InAppMessage(SQLModel, table=True):
    id: str = Field(primary_key=True)  # derived from the idempotency key: a retry finds it
    account_id: str = Field(index=True)
    audience: str  # a role (admin, champion, …) or "all"
    title: str
    body: str
    deliver_at: datetime
    status: str = Field(default="scheduled", index=True)  # scheduled|cancelled|delivered
    created_at: datetime


class CsmTask(SQLModel, table=True):
    id: str = Field(primary_key=True)
    account_id: str = Field(index=True)
    assignee: str = Field(index=True)
    title: str
    detail: str = ""
    due: datetime
    status: str = Field(default="open", index=True)  # open|done|cancelled
    created_at: datetime
