"""Sweep: one scheduled pass over the accounts (`runtime/schedules.py` starts it daily
per scheduled agent). Thin: the activity evaluates and starts; it is idempotent per
agent, account and day, so retries and a second sweep start nothing twice."""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy

# Pydantic models and the activity's reference, loaded once, not per run.
with workflow.unsafe.imports_passed_through():
    from autopilot.workflows.sweep.activities import SweepActivities, SweepInput, SweepResult

SWEEP_TIMEOUT = timedelta(hours=2)
HEARTBEAT = timedelta(minutes=2)  # one batch of accounts beats well within this


@workflow.defn(name="Sweep")
class SweepWorkflow:
    @workflow.run
    async def run(self, input: SweepInput) -> SweepResult:
        return await workflow.execute_activity_method(
            SweepActivities.sweep_accounts,
            input,
            start_to_close_timeout=SWEEP_TIMEOUT,
            heartbeat_timeout=HEARTBEAT,
            retry_policy=RetryPolicy(initial_interval=timedelta(seconds=5), maximum_attempts=5),
        )
