"""Bare Temporal workflows with the same shape as an agent run, for same-run baselines."""

from __future__ import annotations

from datetime import timedelta

from temporalio import activity, workflow


@activity.defn(name="bench_noop")
async def noop(step: str) -> str:
    return step


_OPTS = {"start_to_close_timeout": timedelta(seconds=30)}


@workflow.defn(name="BenchBare")
class BareWorkflow:
    """As many activities as an auto-allowed agent run (observe, plan, gate, execute, record)."""

    @workflow.run
    async def run(self, steps: int) -> int:
        for i in range(steps):
            await workflow.execute_activity(noop, f"step-{i}", **_OPTS)  # type: ignore[arg-type]
        return steps


@workflow.defn(name="BenchBareApproval")
class BareApprovalWorkflow:
    """Waits for an Update, then runs the post-approval activities (execute, record)."""

    def __init__(self) -> None:
        self._approved = False

    @workflow.run
    async def run(self, steps: int) -> int:
        await workflow.wait_condition(lambda: self._approved)
        for i in range(steps):
            await workflow.execute_activity(noop, f"after-{i}", **_OPTS)  # type: ignore[arg-type]
        return steps

    @workflow.update(name="decide")
    async def decide(self, verdict: str) -> str:
        self._approved = verdict == "approve"
        return verdict
