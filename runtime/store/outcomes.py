"""Actions whose effect may or may not have happened: the inbox's "check" items."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, Column
from sqlmodel import Field, SQLModel


class OutcomeCheck(SQLModel, table=True):
    """One action with an unknown outcome (handed over, no answer; or the worker died
    mid-call). It stays open, and the action stays counted as spent and as a contact,
    until a person says what happened, or the receiver is asked and answers."""

    run_key: str = Field(primary_key=True)  # the action's ledger row and idempotency key
    org_id: str = Field(default="demo", index=True)
    workflow_id: str = Field(index=True)
    agent: str
    account_id: str = Field(index=True)
    tool: str
    action: dict = Field(sa_column=Column(JSON, nullable=False))
    error: str = ""
    # open | sent | not_sent | resend (a person asked for it) | resent | reconciled
    status: str = Field(default="open", index=True)
    opened_at: datetime
    resolved_by: str | None = None
    resolved_at: datetime | None = None
    note: str = ""
    resends: int = 0
