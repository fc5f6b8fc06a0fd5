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
inbox would wait for the send, and for the next action's gate).
Histories from before this path replay on the graph they ran on (`patched`)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any, cast

from temporalio import activity, workflow
from temporalio.common import RetryPolicy

from autopilot.runtime.graph import fused
from autopilot.runtime.graph.state import RunState

# --- the steps, as activities (registered on the worker; run locally) ----------------


@activity.defn(name="agent_local.prepare")
async def prepare_step(state: dict[str, Any]) -> dict[str, Any]:
    return await fused.prepare(cast(RunState, state))


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
        return await self._run(act_step, "act", state)
