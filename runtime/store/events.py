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


class EventDispatch(SQLModel, table=True):
    """The dispatch intent, committed with its event and the account change: the agents
    the event triggered. A dispatcher starts them and keeps trying while Temporal is
    down; `dispatched_at` is set once every run is started (or signalled)."""

    event_id: int = Field(primary_key=True)
    account_id: str = Field(index=True)
    type: str
    agents: list = Field(sa_column=Column(JSON, nullable=False))
    created_at: datetime
    dispatched_at: datetime | None = Field(default=None, index=True)
    attempts: int = 0
    last_error: str | None = None


class EventKey(SQLModel, table=True):
    """A client's idempotency key for POST /events: a retry returns the first event."""

    org_id: str = Field(primary_key=True)
    key: str = Field(primary_key=True, max_length=200)
    event_id: int
