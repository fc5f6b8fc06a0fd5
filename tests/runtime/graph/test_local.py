"""The local action path: its steps run as local activities, so a worker that dies
mid-step leaves no marker and the step runs again as attempt 1 on another worker. Such a
re-run must not decide again once the tool call began."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from sqlmodel import Session, select
from temporalio import activity
from temporalio.testing import ActivityEnvironment
from temporalio.worker import ActivityInboundInterceptor, ExecuteActivityInput, Interceptor

from autopilot.runtime.devstack.scenarios import drop_events
from autopilot.runtime.graph.builder import LOCAL_GRAPH
from autopilot.runtime.graph.fused import _merge
from autopilot.runtime.graph.local import act_step
from autopilot.runtime.store.accounts import Contact
from autopilot.runtime.store.outcomes import OutcomeCheck
from autopilot.runtime.store.tool_calls import ToolCallRecord
from tests.conftest import make_settings


class _KeepsActInputs(Interceptor):
    """Keeps the state each first `act` started with (what a re-run would be given): the
    `prepare` step acts too, on its input with its plan applied."""

    def __init__(self) -> None:
        self.inputs: list[dict[str, Any]] = []
        self.local: list[bool] = []
        self.acted: list[bool] = []

    def intercept_activity(self, next: ActivityInboundInterceptor) -> ActivityInboundInterceptor:
        outer = self

        class Inbound(ActivityInboundInterceptor):
            async def execute_activity(self, input: ExecuteActivityInput) -> Any:
                info = activity.info()
                update = await super().execute_activity(input)
                if info.activity_type == f"{LOCAL_GRAPH}.prepare":
                    plan = {k: v for k, v in update.items() if k != "pre_act"}
                    outer.inputs.append(_merge(input.args[0], plan))  # type: ignore[arg-type]
                    outer.local.append(info.is_local)
                    outer.acted.append(update.get("pre_act") is not None)
                return update

        return Inbound(next)


async def test_an_act_step_run_again_after_its_worker_died_keeps_its_logged_decision(
    stack_factory: Any, tmp_path: Path
) -> None:
    """The email left, then the worker died before the step's marker was written (the
    call is left `started`), and the recipient opted out meanwhile. The step runs again
    as attempt 1: a fresh gate would deny it and record "denied" over a sent message;
    it keeps its decision and the outcome is unknown, in the inbox."""
    keep = _KeepsActInputs()
    settings = make_settings(tmp_path)
    async with stack_factory(settings=settings, worker_kwargs={"interceptors": [keep]}) as stack:
        (account,) = stack.pick("smb", max_arr=50_000)
        (wf_id,) = await stack.post_events(drop_events(stack.db, account))
        result = await stack.run_result(wf_id)
        assert [o.status for o in result.outcomes] == ["executed"]
        assert keep.local == [True]  # the step ran as a local activity
        assert keep.acted == [True]  # and acted in the same local activity
        with Session(stack.db) as s:
            (call,) = s.exec(select(ToolCallRecord)).all()
            call.status, call.finished_at = "started", None
            s.add(call)
            for c in s.exec(select(Contact).where(Contact.account_id == account)):
                c.opted_out = True
                s.add(c)
            s.commit()
            key = call.idempotency_key

        env = ActivityEnvironment()
        env.info = dataclasses.replace(
            env.info,
            activity_type=f"{LOCAL_GRAPH}.act",
            is_local=True,
            attempt=1,
            task_queue=stack.task_queue,
            workflow_id=wf_id,
        )
        update = await env.run(act_step, keep.inputs[0])

        assert [(o["status"], o["codes"]) for o in update["outcomes"]] == [
            ("unknown", ["tool.outcome_unknown"])
        ]
        assert len(stack.mails()) == 1  # sent once, not again
        with Session(stack.db) as s:
            assert s.get(OutcomeCheck, key).status == "open"  # type: ignore[union-attr]
