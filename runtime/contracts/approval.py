"""ApprovalRequest / ApprovalDecision: between the workflow and the inbox."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class ApprovalRequest(BaseModel):
    model_config = ConfigDict(frozen=True)

    approval_id: str
    workflow_id: str
    agent: str
    account_id: str
    action: dict[str, Any]
    payload_hash: str
    roles: list[str]
    reasons: list[str]
    timeout_hours: float


class ApprovalDecision(BaseModel):
    """What an approver sends; bound to one approval and one exact payload."""

    model_config = ConfigDict(frozen=True)

    approval_id: str
    payload_hash: str
    verdict: Literal["approve", "reject"]
    actor: str = Field(min_length=1)
    reason: str = ""
    decided_at: datetime | None = None


class ApprovalOutcome(BaseModel):
    approval_id: str
    status: Literal["approved", "rejected"]
    actor: str
