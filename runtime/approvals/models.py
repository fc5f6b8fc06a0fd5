"""The inbox API's model families: Create (requests), Public (responses)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

Hash = Field(min_length=64, max_length=64, description="hash of the action you saw")


class DecisionCreate(BaseModel):
    verdict: Literal["approve", "reject"]
    payload_hash: str = Hash
    reason: str = Field("", max_length=2000)

    @model_validator(mode="after")
    def _reject_needs_reason(self) -> DecisionCreate:
        if self.verdict == "reject" and not self.reason.strip():
            raise ValueError("a rejection needs a reason")
        return self


class EditCreate(BaseModel):
    payload_hash: str = Hash
    args: dict[str, Any] = Field(min_length=1, description="new values for the tool's arguments")
    reason: str = Field("", max_length=2000)


class BulkItem(BaseModel):
    id: str
    payload_hash: str = Hash


class BulkCreate(BaseModel):
    verdict: Literal["approve", "reject"]
    reason: str = Field("", max_length=2000)
    items: list[BulkItem] = Field(min_length=1, max_length=500)

    @model_validator(mode="after")
    def _reject_needs_reason(self) -> BulkCreate:
        if self.verdict == "reject" and not self.reason.strip():
            raise ValueError("a rejection needs a reason")
        return self


class ReassignCreate(BaseModel):
    to: str = Field(min_length=1)


class CommentCreate(BaseModel):
    text: str = Field(min_length=1, max_length=4000)


class ListQuery(BaseModel):
    """The inbox list's query parameters (`GET /approvals`)."""

    model_config = ConfigDict(extra="ignore")

    status: str | None = "pending"
    agent: str | None = None
    account_id: str | None = None
    segment: str | None = None
    role: str | None = None
    min_risk: float | None = Field(None, ge=0, le=1, allow_inf_nan=False)
    min_value: float | None = Field(None, ge=0, le=1e15, allow_inf_nan=False)
    older_than_hours: float | None = Field(None, ge=0, le=24 * 366 * 10, allow_inf_nan=False)
    sort: Literal["age", "value", "risk"] = "age"
    limit: int = Field(50, ge=1, le=1000)
    offset: int = Field(0, ge=0, le=10_000_000)


class VotePublic(BaseModel):
    role: str
    verdict: str
    actor: str
    reason: str
    at: datetime


class ApprovalPublic(BaseModel):
    id: str
    workflow_id: str
    agent: str
    account_id: str
    segment: str
    tool: str
    action: dict[str, Any]
    payload_hash: str
    value: float
    risk: float
    roles: list[str]
    reasons: list[str]
    status: str
    assigned_to: str | None
    created_at: datetime
    due_at: datetime
    decided_by: str | None
    decided_at: datetime | None
    decision_reason: str | None
    edited_from: str | None
    votes: list[VotePublic] = []
    can_decide_as: str | None = None  # the role you would vote for now, if any


class CommentPublic(BaseModel):
    author: str
    text: str
    at: datetime


class ApprovalDetail(ApprovalPublic):
    preview: dict[str, Any]  # the tool's dry run: the rendered email, the offer
    decision: dict[str, Any]  # the gate's decision: reasons, roles, obligations
    signals: list[dict[str, Any]] = []  # expansion, adoption and risk signals
    optimizer: dict[
        str, Any
    ] = {}  # the Cost-to-Retain Optimizer's cheapest plan and its runners-up
    health: dict[str, Any]  # score, risk and its factor contributions
    alternatives: list[dict[str, Any]]  # the run's other proposed actions
    history: list[dict[str, Any]]  # the run's audit trail
    comments: list[CommentPublic]


class BulkResult(BaseModel):
    id: str
    ok: bool
    status_code: int
    status: str | None = None
    error: str | None = None
