"""The inbox's service: list pending approvals and deliver decisions to the waiting
workflow as a Temporal Update (used by the API and the CLI alike)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field, model_validator
from sqlalchemy.engine import Engine
from sqlmodel import col, select
from temporalio.client import Client, WorkflowUpdateFailedError
from temporalio.service import RPCError

from autopilot.runtime.contracts.approval import ApprovalDecision, ApprovalOutcome
from autopilot.runtime.store.approvals import Approval
from autopilot.runtime.store.db import transaction


class ApprovalNotFound(LookupError):
    pass


class ApprovalConflict(RuntimeError):
    """Already decided, stale payload hash, or the workflow refused the update."""


class DecisionCreate(BaseModel):
    verdict: Literal["approve", "reject"]
    actor: str = Field(min_length=1, max_length=100)
    payload_hash: str = Field(min_length=64, max_length=64, description="hash of the action you saw")
    reason: str = Field("", max_length=2000)

    @model_validator(mode="after")
    def _reject_needs_reason(self) -> DecisionCreate:
        if self.verdict == "reject" and not self.reason.strip():
            raise ValueError("a rejection needs a reason")
        return self


class ApprovalPublic(BaseModel):
    id: str
    workflow_id: str
    agent: str
    account_id: str
    action: dict[str, Any]
    payload_hash: str
    roles: list[str]
    reasons: list[str]
    status: str
    created_at: datetime
    due_at: datetime
    decided_by: str | None
    decided_at: datetime | None
    decision_reason: str | None


class ApprovalService:
    def __init__(self, db: Engine, client: Client) -> None:
        self.db, self.client = db, client

    def list(self, *, status: str | None = "pending", limit: int = 200) -> list[ApprovalPublic]:
        with transaction(self.db) as session:
            query = select(Approval).order_by(col(Approval.created_at)).limit(limit)
            if status:
                query = query.where(Approval.status == status)
            return [ApprovalPublic.model_validate(r, from_attributes=True) for r in session.exec(query)]

    def get(self, approval_id: str) -> ApprovalPublic:
        with transaction(self.db) as session:
            row = session.get(Approval, approval_id)
            if row is None:
                raise ApprovalNotFound(approval_id)
            return ApprovalPublic.model_validate(row, from_attributes=True)

    async def decide(self, approval_id: str, body: DecisionCreate) -> ApprovalOutcome:
        item = self.get(approval_id)
        if item.status != "pending":
            raise ApprovalConflict(f"approval {approval_id} is already {item.status}")
        if body.payload_hash != item.payload_hash:
            raise ApprovalConflict("stale decision: the action changed since you saw it")
        decision = ApprovalDecision(approval_id=approval_id, payload_hash=body.payload_hash,
                                    verdict=body.verdict, actor=body.actor, reason=body.reason)
        handle = self.client.get_workflow_handle(item.workflow_id)
        try:
            return await handle.execute_update("decide", decision, result_type=ApprovalOutcome)
        except WorkflowUpdateFailedError as err:
            raise ApprovalConflict(str(err.cause or err)) from err
        except RPCError as err:
            raise ApprovalConflict(f"the run no longer accepts decisions: {err.message}") from err
