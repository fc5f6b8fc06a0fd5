"""The fused action path with no server round trip: `prepare` and `act` run as Temporal
*local* activities, started by workflow-side nodes (the LangGraph plugin runs a node as an
activity or in the workflow, never as a local activity).

An activity costs a round trip to the Temporal server and a workflow task after it; a
local activity runs in the worker that holds the workflow task and its result is written
into the history as a marker when the task completes. An auto-allowed action is then
prepared, gated, sent and recorded within the run's first workflow task.

Durability where the side effect happens, argued case by case:

- A failure the code sees (a send known not to have happened, a busy model, a database
  error) is retried by Temporal with the same retry policy as the activity: in the worker
  while the back-off is short, past a minute as a durable timer in the history.
- A worker that dies mid-step leaves no marker: the workflow task times out and another
  worker runs the step again, as attempt 1. `act` then looks at the call's ledger before
  it gates (fused._gate_once): a call that began keeps the decision it logged, and the
  executor's ledger decides the send: done → its stored result (not sent again), started →
  `unknown` and an inbox check (visible), never begun → sent now. The record step is
  keyed by the action (status and cost booked once).

So every side effect still ends delivered once, known not sent, or visibly unknown.

`finish` (the send after an approval) stays an activity: a local activity holds the
workflow task open until it ends, and with it the answer to the approver's Update (the
inbox would wait for the send, and for the next action's gate). It stores the deciding
vote first (the Update does not: runtime/approvals/votes.py).
Histories from before this path replay on the graph they ran on (`patched`)."""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any, cast

from sqlmodel import Session
from temporalio import activity, workflow
from temporalio.common import RetryPolicy

from autopilot.runtime import services
from autopilot.runtime.execution.executor import call_state
from autopilot.runtime.graph import fused
from autopilot.runtime.graph.state import RunState, View
from autopilot.runtime.store.actions import ActionRecord

log = logging.getLogger(__name__)

# --- the steps, as activities (registered on the worker; run locally) ----------------


@activity.defn(name="agent_local.prepare")
async def prepare_step(state: dict[str, Any]) -> dict[str, Any]:
    """`prepare`, then (when the plan has an action) the first `act` in the same local
    activity: one local activity fewer per run, about 4 ms (evals/bench/e2e.py). Its
    update rides along as `pre_act`; the `act` node hands it on instead of acting again.

    An `act` that fails here is not retried here (this step has the plan's retry policy,
    not the send's): the plan is returned alone and the `act` node runs the step as its
    own local activity, with the send's policy, as a re-run after a crash would
    (`fused._gate_once`: a call that began keeps its logged decision)."""
    prepared = _keep_begun(cast(RunState, state), await fused.prepare(cast(RunState, state)))
    ready = fused._merge(cast(RunState, state), prepared)
    if await fused.choose(ready) != "act":
        return prepared
    try:
        acted = await fused.act(ready)
    except Exception as err:  # noqa: BLE001 - the act node runs it again, with its policy
        log.warning(
            "first act of %s deferred to its own step: %s", state["run"]["workflow_id"], err
        )
        return prepared
    return {**prepared, "pre_act": acted}


def _keep_begun(state: RunState, prepared: dict[str, Any]) -> dict[str, Any]:
    """A re-run of this step (its worker died after the send began, before the marker)
    plans again, and the new plan may differ: the recipient opted out, the account moved
    on. An action whose tool call began stays the one acted on at its place, so that the
    call ends visibly (done, or unknown and in the inbox) instead of being forgotten."""
    v = View(fused._merge(state, prepared))
    key = v.key
    db = services.current().db
    if call_state(db, key) is None:
        return prepared
    with Session(db) as session:
        row = session.get(ActionRecord, key)
    if row is None or not row.payload:
        return prepared
    actions = list(prepared.get("actions", state.get("actions", [])))[: v.index]
    later = list(prepared.get("actions", []))[v.index + 1 :]
    return {**prepared, "actions": [*actions, row.payload, *later]}


@activity.defn(name="agent_local.act")
async def act_step(state: dict[str, Any]) -> dict[str, Any]:
    return await fused.act(cast(RunState, state))


STEPS = [prepare_step, act_step]


# --- the workflow-side nodes that start them -------------------------------------------


def options(
    *, max_send_backoff_s: float = 300.0, send_timeout_s: float = 90.0
) -> dict[str, dict[str, Any]]:
    """Each step's timeout and retry policy: the activity path's (builder._PLAN, _send)."""
    send = {
        # A worker killed mid-send is noticed when the workflow task times out: the step
        # runs again and finds the call started (unknown), done, or not begun (sent now).
        "start_to_close_timeout": timedelta(seconds=send_timeout_s),
        "retry_policy": RetryPolicy(
            initial_interval=timedelta(seconds=1),
            backoff_coefficient=2.0,
            maximum_interval=timedelta(seconds=max_send_backoff_s),
            maximum_attempts=0,  # unlimited: the step ends the action past its window
        ),
    }
    prepare = {
        # Planning may ask a model (an answer and one repair): minutes.
        "start_to_close_timeout": timedelta(seconds=300),
        "retry_policy": RetryPolicy(
            initial_interval=timedelta(milliseconds=200), maximum_attempts=10
        ),
    }
    # A retry that waits longer than this waits on a durable timer: the workflow task
    # ends meanwhile (an approver's Update is answered; the wait is in the history).
    wait = {"local_retry_threshold": timedelta(milliseconds=500)}
    return {"prepare": {**prepare, **wait}, "act": {**send, **wait}}


class LocalSteps:
    """The graph's nodes for the local path: each starts its step as a local activity."""

    def __init__(self, opts: dict[str, dict[str, Any]]) -> None:
        self.opts = opts

    async def _run(self, step: Any, name: str, state: RunState) -> dict[str, Any]:
        return await workflow.execute_local_activity(
            step, dict(state), **self.opts[name], summary=name
        )

    async def prepare(self, state: RunState) -> dict[str, Any]:
        return await self._run(prepare_step, "prepare", state)

    async def act(self, state: RunState) -> dict[str, Any]:
        done = state.get("pre_act")
        if done is not None:  # acted in `prepare`'s local activity (its marker has it)
            return {**done, "pre_act": None}
        return await self._run(act_step, "act", state)
