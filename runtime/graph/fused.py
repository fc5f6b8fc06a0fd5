"""The action path in fewer server round trips: the same nodes, run back to back inside
one activity where nothing durable needs to happen between them.

Each activity costs a round trip to the Temporal server and a workflow task after it; the
graph of five activities per action (observe, plan, gate, execute, record) was slower than
a bare five-activity workflow. Here an auto-allowed action takes two activities:

- `prepare`: observe → assess → plan (reads and a pure assessment: nothing to keep).
- `act`: the gate and, when the gate lets the action run on its own, execute and record.
  An action that needs a person stops after the gate (the approval interrupt runs in the
  workflow); a denied one is recorded in the same activity.
- `finish`: after an approval, execute and record.

Durability is where it was: the side effect still runs behind its idempotency key, and a
retried `act` whose tool call already started does not decide again (a different answer
the second time must not hide a send that may have landed): it goes on with the decision
it logged. Histories from before this graph replay on the five-node graph (`patched`)."""

from __future__ import annotations

from typing import Any

from sqlmodel import Session, col, select
from temporalio import activity

from autopilot.runtime import services
from autopilot.runtime.contracts.policy import Decision
from autopilot.runtime.execution.executor import call_state
from autopilot.runtime.graph import nodes
from autopilot.runtime.graph.state import RunState, View
from autopilot.runtime.observability.nodes import traced_node
from autopilot.runtime.store.actions import PolicyDecisionRecord


def _merge(state: RunState, update: dict[str, Any]) -> RunState:
    """`state` with a node's update applied, as LangGraph would (outcomes accumulate)."""
    merged: dict[str, Any] = {**state, **update}
    if "outcomes" in update:
        merged["outcomes"] = [*state.get("outcomes", []), *update["outcomes"]]
    return merged  # type: ignore[return-value]


def _combine(*updates: dict[str, Any]) -> dict[str, Any]:
    """Several nodes' updates as one (later values win; outcomes accumulate)."""
    out: dict[str, Any] = {}
    outcomes: list[dict[str, Any]] = []
    for u in updates:
        outcomes += u.get("outcomes", [])
        out.update({k: v for k, v in u.items() if k != "outcomes"})
    if outcomes:
        out["outcomes"] = outcomes
    return out


@traced_node
async def prepare(state: RunState) -> dict[str, Any]:
    seen = nodes.observe(state)
    state = _merge(state, seen)
    assessed = nodes.assess(state)
    return _combine(seen, assessed, nodes.plan(_merge(state, assessed)))


def _logged_decision(v: View) -> Decision | None:
    """The decision this action was last gated with, if one was logged."""
    with Session(services.current().db) as session:
        row = session.exec(
            select(PolicyDecisionRecord)
            .where(PolicyDecisionRecord.run_key == v.key)
            .order_by(col(PolicyDecisionRecord.id).desc())
            .limit(1)
        ).first()
    return Decision.model_validate(row.result) if row is not None and row.result else None


async def _gate_once(state: RunState) -> dict[str, Any]:
    """The gate, except on a retry after the tool call began: then the logged decision.
    A local activity's step re-runs as attempt 1 after its worker died: it looks too."""
    if activity.in_activity() and (activity.info().attempt > 1 or activity.info().is_local):
        v = View(state)
        if call_state(services.current().db, v.key) is not None:
            logged = _logged_decision(v)
            if logged is not None:
                return {
                    "decision": logged.model_dump(mode="json"),
                    "approval": None,
                    "result": None,
                }
    return await nodes.gate(state)


@traced_node
async def act(state: RunState) -> dict[str, Any]:
    gated = await _gate_once(state)
    state = _merge(state, gated)
    route = await nodes.after_gate(state)
    if route == "approve":
        return gated  # the workflow asks a person; `finish` runs after a yes
    updates = [gated]
    if route == "execute":
        executed = await nodes.execute(state)
        state = _merge(state, executed)
        updates.append(executed)
    updates.append(nodes.record(state))
    return _combine(*updates)


@traced_node
async def finish(state: RunState) -> dict[str, Any]:
    executed = await nodes.execute(state)
    return _combine(executed, nodes.record(_merge(state, executed)))


# --- routing -----------------------------------------------------------------------


async def choose(state: RunState) -> str:
    return "act" if await nodes.choose(state) == "gate" else "__end__"


async def after_act(state: RunState) -> str:
    """A person's turn, or (the action recorded) the next action or the end."""
    decision = state.get("decision")  # None once `act` has recorded the action
    if (
        decision is not None
        and state.get("approval") is None
        and Decision.model_validate(decision).outcome == "require_approval"
    ):
        return "approve"
    return await choose(state)


async def after_approve(state: RunState) -> str:
    return "finish" if await nodes.after_approve(state) == "execute" else "record"
