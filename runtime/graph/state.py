"""The agent graph's state: plain JSON values, so it crosses activity boundaries as is."""

from __future__ import annotations

import operator
from typing import Annotated, Any, TypedDict


class RunState(TypedDict, total=False):
    run: dict[str, Any]  # AgentRunInput + workflow_id
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


def run_key(state: RunState) -> str:
    run = state["run"]
    return f"{run['workflow_id']}/{run['event']['event_id']}/{state['index']}"
