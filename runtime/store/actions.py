"""Proposed actions and the policy decision log."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, Column
from sqlmodel import Field, SQLModel

from autopilot.runtime.contracts.action import ProposedAction


class ActionRecord(SQLModel, table=True):
    """One proposed action of one run; its status follows the action's path."""

    run_key: str = Field(primary_key=True)  # workflow id / trigger event / action index
    workflow_id: str = Field(index=True)
    agent: str = Field(index=True)
    account_id: str = Field(index=True)
    segment: str = Field(index=True)
    tool: str
    payload: dict = Field(sa_column=Column(JSON, nullable=False))
    payload_hash: str
    # What the ledger sums (executed actions only): spend, discounts, contacts.
    expected_cost: float = 0.0
    discount_pct: float = 0.0
    high_touch: bool = False
    recipient: str | None = Field(default=None, index=True)
    status: str = Field(index=True)  # allowed|pending|denied|rejected|executed|failed
    needed_approval: bool = False  # for the autonomy rate: executed without a person, or not
    rejection_reason: str | None = None  # reaches the planner: no re-proposal within the cool-down
    created_at: datetime
    updated_at: datetime

    def take(self, action: ProposedAction) -> None:
        """The action's ledger fields (cost, discount, contact), from the action as it now is."""
        self.tool, self.payload, self.payload_hash = (
            action.tool,
            action.model_dump(mode="json"),
            action.payload_hash,
        )
        self.expected_cost, self.discount_pct = action.expected_cost, action.discount_pct
        self.high_touch, self.recipient = action.high_touch, action.args.get("to")


class PolicyDecisionRecord(SQLModel, table=True):
    """Decision log: every gate evaluation with its full input and hashes."""

    id: int | None = Field(default=None, primary_key=True)
    run_key: str = Field(index=True)
    account_id: str = Field(index=True)
    agent: str = Field(index=True)
    input: dict = Field(sa_column=Column(JSON, nullable=False))
    input_hash: str
    bundle_hash: str
    result: dict = Field(sa_column=Column(JSON, nullable=False))
    outcome: str = Field(index=True)
    codes: str = Field(default="", index=True)  # deny codes, space-separated, for queries by code
    latency_ms: float
    decided_at: datetime


class LedgerVersion(SQLModel, table=True):
    """A counter per ledger scope (the segment: its budget is shared by its accounts).
    A reservation commits only if the scope's version is the one its gate read, so two
    gates racing for the same budget cannot both reserve it."""

    scope: str = Field(primary_key=True)
    version: int = 0


class SupervisorConflict(SQLModel, table=True):
    """Two agents wanted one account's contact or budget: who won, who yielded, and why."""

    id: int | None = Field(default=None, primary_key=True)
    account_id: str = Field(index=True)
    kind: str  # contact | budget
    winner_agent: str
    winner_key: str = Field(index=True)
    other_agent: str
    other_key: str = Field(index=True)
    outcome: str  # preempted (the other's action stops) | deferred (this action yields)
    recipient: str | None = None
    reason: str
    at: datetime


class AttributedRevenue(SQLModel, table=True):
    """Revenue an agent's run is credited with: the `expanded` event that met its goal
    (one credit per event)."""

    event_id: int = Field(primary_key=True)
    account_id: str = Field(index=True)
    agent: str = Field(index=True)
    workflow_id: str
    amount: float
    at: datetime
