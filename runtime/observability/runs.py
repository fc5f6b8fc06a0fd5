"""Runs started and finished, counted from a Temporal worker interceptor.

Workflow code is deterministic and sandboxed: it may not touch a metrics registry.
The interceptor sees each run begin and end and, when it is not replaying, calls out of
the sandbox through an extern function (the way Temporal's own tracing interceptor
emits spans). A continued-as-new run is one run: its continuation is neither a start
nor a finish. A workflow task retried after a lost completion may count twice; the
counter is for rates and alerts, the store's records are the ledger."""

from __future__ import annotations

import asyncio
from typing import Any

from temporalio import workflow
from temporalio.exceptions import FailureError
from temporalio.worker import (
    ExecuteWorkflowInput,
    Interceptor,
    WorkflowInboundInterceptor,
    WorkflowInterceptorClassInput,
)

from autopilot.runtime.observability import metrics

_EXTERN = "__autopilot_run_metrics"
RUN_WORKFLOW = "AgentRun"  # AgentRunWorkflow's registered name


def _agent(workflow_id: str) -> str:
    """`agent:<agent>:<account>` → the agent."""
    parts = workflow_id.split(":")
    return parts[1] if len(parts) >= 3 and parts[0] == "agent" else "unknown"


def _count(workflow_id: str, outcome: str) -> None:
    agent = _agent(workflow_id)
    if outcome == "started":
        metrics.RUNS_STARTED.labels(agent).inc()
    else:
        metrics.RUNS_FINISHED.labels(agent, outcome).inc()


class _RunInbound(WorkflowInboundInterceptor):
    async def execute_workflow(self, input: ExecuteWorkflowInput) -> Any:
        info = workflow.info()
        if info.workflow_type != RUN_WORKFLOW:
            return await super().execute_workflow(input)
        if info.continued_run_id is None:
            self._emit("started")
        try:
            result = await super().execute_workflow(input)
        except workflow.ContinueAsNewError:
            raise
        except asyncio.CancelledError:
            self._emit("cancelled")
            raise
        except FailureError:  # fails the run (other errors fail the task, which is retried)
            self._emit("failed")
            raise
        self._emit("completed")
        return result

    @staticmethod
    def _emit(outcome: str) -> None:
        if not workflow.unsafe.is_replaying():
            workflow.extern_functions()[_EXTERN](workflow.info().workflow_id, outcome)


class RunMetricsInterceptor(Interceptor):
    """Worker interceptor: `autopilot_runs_started` / `autopilot_runs_finished`."""

    def workflow_interceptor_class(
        self, input: WorkflowInterceptorClassInput
    ) -> type[WorkflowInboundInterceptor]:
        input.unsafe_extern_functions[_EXTERN] = _count
        return _RunInbound
