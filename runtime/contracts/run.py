"""The agent workflow's input, signal and result models."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict


class EventSignal(BaseModel):
    model_config = ConfigDict(frozen=True)

    event_id: int
    type: str


class AgentRunInput(BaseModel):
    """Pins the agent-spec hash and policy-bundle hash so a replay uses the same rules."""

    model_config = ConfigDict(frozen=True)

    agent: str
    account_id: str
    event: EventSignal
    spec_hash: str
    bundle_hash: str


class ActionOutcome(BaseModel):
    index: int
    tool: str
    status: str  # executed | denied | rejected | failed
    codes: list[str] = []
    approval_id: str | None = None
    output: dict[str, Any] = {}


class AgentRunResult(BaseModel):
    workflow_id: str
    outcomes: list[ActionOutcome]
    coalesced_events: int = 0
