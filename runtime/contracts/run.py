"""The agent workflow's input, signal and result models."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict


class EventSignal(BaseModel):
    model_config = ConfigDict(frozen=True)

    event_id: int
    type: str


class ActionOutcome(BaseModel):
    index: int
    tool: str
    step: str = ""  # the playbook step
    status: str  # executed | denied | rejected | failed | preempted | blocked
    codes: list[str] = []
    approval_id: str | None = None
    output: dict[str, Any] = {}


class PreemptSignal(BaseModel):
    """The account supervisor preempted this run's action `run_key` for agent `by`."""

    run_key: str
    by: str


class AgentRunInput(BaseModel):
    """Pins the agent-spec hash and policy-bundle hash so a replay uses the same rules.
    A run that continues as new after a wait carries where its playbook stands."""

    model_config = ConfigDict(frozen=True)

    agent: str
    account_id: str
    event: EventSignal
    spec_hash: str
    bundle_hash: str
    cursor: int = 0  # the playbook step the next stretch starts at
    stretch: int = 0  # how many waits are behind
    started_at: datetime | None = None  # the first run's start (events since then count)
    done: dict[str, str] = {}  # step id -> final status, from earlier stretches
    outcomes: list[ActionOutcome] = []  # earlier stretches' outcomes


class AgentRunResult(BaseModel):
    workflow_id: str
    outcomes: list[ActionOutcome]
    coalesced_events: int = 0
    exit: str | None = None  # why the playbook stopped early: goal_met, churned, ...
    stretches: int = 1
