"""The agent graph's state, and its typed view.

The state itself is plain JSON values (a TypedDict): LangGraph merges it and the
Temporal plugin carries it across activity boundaries as JSON. Nodes do not read those
dicts: `View` parses each part once into its contract model, typed."""

from __future__ import annotations

import operator
from functools import cached_property
from typing import Annotated, Any, TypedDict

from autopilot.runtime.contracts.account import AccountSnapshot, Assessment
from autopilot.runtime.contracts.action import ProposedAction
from autopilot.runtime.contracts.agent_spec import Limits
from autopilot.runtime.contracts.approval import ApprovalDecision
from autopilot.runtime.contracts.policy import Decision
from autopilot.runtime.contracts.run import AgentRunInput


class RunState(TypedDict, total=False):
    run: dict[str, Any]  # RunInfo
    account: dict[str, Any]  # AccountSnapshot
    assessment: dict[str, Any]  # Assessment
    limits: dict[str, Any]  # the agent's Limits
    actions: list[dict[str, Any]]  # ProposedAction, cheapest first
    rejected: dict[str, str]  # tool -> why a person rejected it recently (not re-proposed)
    index: int  # the action on its way through gate → approve → execute → record
    decision: dict[str, Any] | None  # Decision for actions[index]
    approval: dict[str, Any] | None  # ApprovalDecision for actions[index]
    result: dict[str, Any] | None  # ToolResult or {"status": "failed", ...}
    outcomes: Annotated[list[dict[str, Any]], operator.add]  # ActionOutcome per action
    # The playbook (the plan node sets these for the stretch it planned):
    notes: list[dict[str, Any]]  # playbook.Note per step: why it did or did not act
    events: list[str]  # event types on the account since the run began
    exit: str | None  # why the playbook stops: goal_met, churned, human_took_over, ...
    next_cursor: int | None  # where the stretch after the wait starts (None: the end)
    wait_s: float | None  # the wait before it
    pre_act: dict[str, Any] | None  # the local path: the first act's update, made in prepare


class RunInfo(AgentRunInput):
    workflow_id: str


class View:
    """Typed, parsed-once access to a RunState; a part the graph has not reached yet
    raises KeyError (a node that reads it runs too early: a bug, not a state)."""

    def __init__(self, state: RunState) -> None:
        self.state = state

    def _part(self, name: str) -> Any:
        value = self.state.get(name)
        if value is None:
            raise KeyError(f"the run state has no {name} yet")
        return value

    @cached_property
    def run(self) -> RunInfo:
        return RunInfo.model_validate(self._part("run"))

    @cached_property
    def account(self) -> AccountSnapshot:
        return AccountSnapshot.model_validate(self._part("account"))

    @cached_property
    def assessment(self) -> Assessment:
        return Assessment.model_validate(self._part("assessment"))

    @cached_property
    def limits(self) -> Limits:
        return Limits.model_validate(self._part("limits"))

    @property
    def index(self) -> int:
        return int(self.state.get("index", 0))

    @cached_property
    def actions(self) -> list[ProposedAction]:
        return [ProposedAction.model_validate(a) for a in self.state.get("actions", [])]

    @property
    def action(self) -> ProposedAction:
        """The action on its way through gate → approve → execute → record."""
        return self.actions[self.index]

    @cached_property
    def decision(self) -> Decision:
        return Decision.model_validate(self._part("decision"))

    @cached_property
    def approval(self) -> ApprovalDecision | None:
        raw = self.state.get("approval")
        return ApprovalDecision.model_validate(raw) if raw is not None else None

    @property
    def result(self) -> dict[str, Any] | None:
        return self.state.get("result")

    @property
    def key(self) -> str:
        """The action's key: workflow id / trigger event / [stretch.]action index
        (idempotency, ledger); the first stretch keeps the key runs always had."""
        run = self.run
        at = f"{run.stretch}.{self.index}" if run.stretch else str(self.index)
        return f"{run.workflow_id}/{run.event.event_id}/{at}"
