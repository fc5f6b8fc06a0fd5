"""Between the workflow and the inbox: the request, the votes and edits sent as
Temporal Updates, and the final answer the graph resumes with."""

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
    roles: list[str]  # every one must approve
    reasons: list[str]
    slas: dict[str, float] = {}  # role -> hours before it escalates
    escalate_to: dict[str, str] = {}  # role -> the role that may decide once the SLA passed
    timeout_hours: float  # then the item is rejected (fail closed)
    decision: dict[str, Any] = {}  # the gate's decision that asked for approval
    risk: float = 0.0
    bundle_hash: str = ""
    spec_hash: str = ""
    edited_from: str | None = None
    run_key: str | None = (
        None  # the action's ledger row (None in histories from before reservations)
    )


class ApprovalVote(BaseModel):
    """One approver's verdict for one required role, bound to one exact payload."""

    model_config = ConfigDict(frozen=True)

    approval_id: str
    payload_hash: str
    role: str
    verdict: Literal["approve", "reject"]
    actor: str = Field(min_length=1)
    reason: str = ""
    decided_at: datetime | None = None


class ApprovalEdit(BaseModel):
    """New arguments for the pending action; the edited action is gated again."""

    model_config = ConfigDict(frozen=True)

    approval_id: str
    payload_hash: str
    args: dict[str, Any]
    actor: str = Field(min_length=1)
    reason: str = ""


class ApprovalDecision(BaseModel):
    """The final answer the graph resumes with (for the item the graph asked about)."""

    model_config = ConfigDict(frozen=True)

    approval_id: str
    payload_hash: str
    verdict: Literal["approve", "reject"]
    actor: str = Field(min_length=1)
    reason: str = ""
    decided_at: datetime | None = None
    action: dict[str, Any] | None = None  # set when the action was edited
    decision: dict[str, Any] | None = None  # the edited action's gate decision
    # The vote that decided the item, stored by the step that acts on the answer (the
    # send, or the record of a rejection): not while the approver's Update waits.
    vote: ApprovalVote | None = None


class ApprovalOutcome(BaseModel):
    approval_id: str
    status: Literal["pending", "approved", "rejected", "expired", "superseded"]
    actor: str
    remaining_roles: list[str] = []
    decided_at: datetime | None = None  # the vote's time (as the run stamped it)
    new_approval_id: str | None = None  # after an edit that needs approval again
    codes: list[str] = []  # after an edit the gate denied
