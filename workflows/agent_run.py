"""AgentRun: one agent's durable run for one account, id `agent:<agent>:<account>`.

Thin by design: the LangGraph graph does the work (its I/O nodes are activities);
this workflow feeds it, parks it on approvals and delivers the inbox's answers."""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy

# Pydantic contracts and langgraph are pure and loaded once, not per run.
with workflow.unsafe.imports_passed_through():
    from langgraph.checkpoint.memory import InMemorySaver
    from langgraph.types import Command
    from temporalio.langgraph import graph

    from autopilot.runtime.activities import ApprovalActivities
    from autopilot.runtime.contracts.approval import ApprovalDecision, ApprovalOutcome, ApprovalRequest
    from autopilot.runtime.contracts.run import ActionOutcome, AgentRunInput, AgentRunResult, EventSignal
    from autopilot.runtime.graph.builder import GRAPH_NAME

_ACTIVITY = {"start_to_close_timeout": timedelta(seconds=30),
             "retry_policy": RetryPolicy(initial_interval=timedelta(milliseconds=200), maximum_attempts=10)}


@workflow.defn(name="AgentRun")
class AgentRunWorkflow:
    def __init__(self) -> None:
        self._pending: dict[str, ApprovalRequest] = {}
        self._answers: dict[str, ApprovalDecision] = {}
        self._events: list[EventSignal] = []

    @workflow.run
    async def run(self, inp: AgentRunInput) -> AgentRunResult:
        wf_id = workflow.info().workflow_id
        app = graph(GRAPH_NAME).compile(checkpointer=InMemorySaver())
        config = {"configurable": {"thread_id": wf_id}}
        state = {"run": {**inp.model_dump(mode="json"), "workflow_id": wf_id}, "outcomes": []}
        result = await app.ainvoke(state, config)
        while "__interrupt__" in result:
            request = ApprovalRequest.model_validate(result["__interrupt__"][0].value)
            answer = await self._await_answer(request)
            result = await app.ainvoke(Command(resume=answer.model_dump(mode="json")), config)
        return AgentRunResult(
            workflow_id=wf_id,
            outcomes=[ActionOutcome.model_validate(o) for o in result.get("outcomes", [])],
            # Events that arrived while this run worked are coalesced into it.
            coalesced_events=max(0, len(self._events) - 1),
        )

    async def _await_answer(self, request: ApprovalRequest) -> ApprovalDecision:
        self._pending[request.approval_id] = request
        await workflow.execute_activity_method(ApprovalActivities.open_approval, request, **_ACTIVITY)
        try:
            await workflow.wait_condition(
                lambda: request.approval_id in self._answers,
                timeout=timedelta(hours=request.timeout_hours),
            )
        except TimeoutError:
            # Not clearly approved in time: rejected (fail closed).
            timeout = ApprovalDecision(approval_id=request.approval_id, payload_hash=request.payload_hash,
                                       verdict="reject", actor="system:timeout", reason="approval timed out",
                                       decided_at=workflow.now())
            self._answers[request.approval_id] = timeout
            await workflow.execute_activity_method(ApprovalActivities.close_approval, timeout, **_ACTIVITY)
        return self._answers[request.approval_id]

    @workflow.signal(name="event")
    def event(self, signal: EventSignal) -> None:
        self._events.append(signal)

    @workflow.update(name="decide")
    async def decide(self, decision: ApprovalDecision) -> ApprovalOutcome:
        decision = decision.model_copy(update={"decided_at": decision.decided_at or workflow.now()})
        # Claim the item before awaiting, so a concurrent second update is refused.
        self._answers[decision.approval_id] = decision
        return await workflow.execute_activity_method(ApprovalActivities.close_approval, decision, **_ACTIVITY)

    @decide.validator
    def _validate_decision(self, decision: ApprovalDecision) -> None:
        request = self._pending.get(decision.approval_id)
        if request is None:
            raise ValueError(f"unknown approval {decision.approval_id}")
        if decision.approval_id in self._answers:
            raise ValueError(f"approval {decision.approval_id} is already decided")
        if decision.payload_hash != request.payload_hash:
            raise ValueError("stale decision: the action's payload hash differs")

    @workflow.query(name="pending")
    def pending(self) -> list[ApprovalRequest]:
        return [r for k, r in self._pending.items() if k not in self._answers]
