"""The inbox: approval items, the votes on them (one per required role), comments."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, Column, Index, UniqueConstraint
from sqlmodel import Field, SQLModel


class Approval(SQLModel, table=True):
    # The inbox's query: an organisation's pending items, oldest first, or the costliest
    # first (without the second, that sort reads and sorts every pending item).
    __table_args__ = (
        Index("ix_approval_inbox", "org_id", "status", "created_at"),
        Index("ix_approval_inbox_value", "org_id", "status", "value"),
    )

    id: str = Field(primary_key=True)
    org_id: str = Field(default="demo", index=True)
    workflow_id: str = Field(index=True)
    run_key: str = Field(index=True)
    agent: str = Field(index=True)
    account_id: str = Field(index=True)
    segment: str = Field(default="", index=True)
    tool: str = Field(default="", index=True)
    action: dict = Field(sa_column=Column(JSON, nullable=False))
    payload_hash: str
    value: float = Field(default=0.0, index=True)  # the action's expected cost
    risk: float = Field(default=0.0, index=True)  # the account's churn risk when proposed
    roles: list = Field(sa_column=Column(JSON, nullable=False))  # every one must approve
    # role -> roles that may also decide it (grows when its SLA passes: escalation)
    deciders: dict = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    reasons: list = Field(sa_column=Column(JSON, nullable=False))
    decision: dict = Field(
        default_factory=dict, sa_column=Column(JSON, nullable=False)
    )  # the gate's
    status: str = Field(
        default="pending", index=True
    )  # pending|approved|rejected|expired|superseded
    assigned_to: str | None = Field(default=None, index=True)
    created_at: datetime = Field(index=True)
    due_at: datetime
    decided_by: str | None = None
    decided_at: datetime | None = None
    decision_reason: str | None = None
    edited_from: str | None = None


class ApprovalVote(SQLModel, table=True):
    __table_args__ = (UniqueConstraint("approval_id", "role", name="uq_vote_role"),)

    id: int | None = Field(default=None, primary_key=True)
    approval_id: str = Field(foreign_key="approval.id", index=True)
    role: str
    verdict: str
    actor: str
    reason: str = ""
    at: datetime


class ApprovalComment(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    approval_id: str = Field(foreign_key="approval.id", index=True)
    author: str
    text: str
    at: datetime
