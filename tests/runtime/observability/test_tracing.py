"""One run is one trace: the API request, the workflow, every node, the gate's decision
and the tool call, under the same trace id."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from sqlmodel import Session, select

from autopilot.runtime import schedules
from autopilot.runtime.config import Settings
from autopilot.runtime.contracts.event import EventIn
from autopilot.runtime.devstack.scenarios import drop_events
from autopilot.runtime.observability import tracing
from autopilot.runtime.store.tool_calls import ToolCallRecord
from autopilot.workflows.sweep.activities import SweepResult
from tests.conftest import Stack, wait_for, wait_for_async
from tests.workflows.test_sweep import Agents, sweep_stack

NODES = ["node.observe", "node.assess", "node.plan", "node.gate", "node.execute", "node.record"]


def by_name(spans: InMemorySpanExporter) -> dict[str, list[ReadableSpan]]:
    out: dict[str, list[ReadableSpan]] = {}
    for s in spans.get_finished_spans():
        out.setdefault(s.name, []).append(s)
    return out


async def test_one_run_is_one_trace_from_the_request_to_the_tool_call(
    stack: Stack, spans: InMemorySpanExporter
) -> None:
    (account,) = stack.pick("smb", max_arr=50_000)
    (wf_id,) = await stack.post_events(drop_events(stack.db, account))
    result = await stack.run_result(wf_id)
    assert [(o.tool, o.status) for o in result.outcomes] == [("send_email", "executed")]
    named = await wait_for(lambda: "node.record" in (n := by_name(spans)) and n, what="spans")

    (workflow,) = named["RunWorkflow:AgentRun"]
    assert workflow.attributes is not None and workflow.attributes["temporalWorkflowID"] == wf_id
    trace_id = workflow.context.trace_id
    # The run's trace begins at the request whose event started it (one of the posted).
    (request,) = [r for r in named["POST /events"] if r.context.trace_id == trace_id]
    assert request.parent is None and request.kind.name == "SERVER"
    assert request.attributes is not None and request.attributes["http.response.status_code"] == 202
    for node in NODES:
        assert named.get(node), f"no {node} span"
        for s in named[node]:
            assert s.context.trace_id == trace_id, node
            assert s.attributes is not None and s.attributes["account"] == account
            assert s.attributes["agent"] == "churn_rescue"

    (gate,) = named["policy.gate"]
    assert gate.attributes is not None
    assert gate.attributes["policy.bundle_hash"] == stack.services.policy.bundle_hash
    assert gate.attributes["policy.outcome"] == "allow"
    assert tuple(gate.attributes["policy.codes"]) == ()  # type: ignore[arg-type]

    (tool,) = named["tool.call"]
    with Session(stack.db) as s:
        call = s.exec(select(ToolCallRecord)).one()
    assert tool.attributes is not None
    assert tool.attributes["idempotency_key"] == call.idempotency_key
    assert tool.attributes["tool.outcome"] == "done"
    # The tool call hangs off the execute node, which hangs off the workflow's activity.
    (execute,) = named["node.execute"]
    assert tool.parent is not None and tool.parent.span_id == execute.context.span_id
    assert all(s.context.trace_id == trace_id for s in (workflow, gate, tool))


async def test_exporter_is_off_by_default_and_records_nothing(
    stack: Stack, spans: InMemorySpanExporter
) -> None:
    assert Settings().otel_exporter == "none"
    tracing.configure(stack.settings)  # the default: replaces the test's in-memory exporter
    (account,) = stack.pick("smb", max_arr=50_000)
    (wf_id,) = await stack.post_events(drop_events(stack.db, account))
    result = await stack.run_result(wf_id)
    assert [o.status for o in result.outcomes] == ["executed"]
    assert spans.get_finished_spans() == ()


async def test_a_run_started_without_a_request_is_still_one_trace(
    stack: Stack, spans: InMemorySpanExporter
) -> None:
    """The dispatcher, the sweep and schedules start runs with no trace to continue: the
    run gets a root workflow span, and its nodes hang under it."""
    (account,) = stack.pick("smb", max_arr=50_000)
    events = [EventIn.model_validate(e) for e in drop_events(stack.db, account)]
    started = await stack.ingest.ingest(events)
    wf_id = next(s.workflow_id for s in started)
    await stack.run_result(wf_id)
    named = await wait_for(lambda: "node.record" in (n := by_name(spans)) and n, what="spans")
    (workflow,) = named["RunWorkflow:AgentRun"]
    assert "POST /events" not in named
    assert all(s.context.trace_id == workflow.context.trace_id for s in named["node.record"])


async def test_a_run_started_by_a_schedule_is_traced_from_its_sweep(
    stack_factory: Any, tmp_path: Path, spans: InMemorySpanExporter
) -> None:
    """The server starts a scheduled sweep with no trace headers at all: the sweep still
    gets a root span, and the runs its activity starts are traced under that activity."""
    agents = Agents()
    async with sweep_stack(stack_factory, tmp_path, agents) as stack:
        await schedules.ensure_schedules(stack.client, stack.services.specs, stack.task_queue)
        await schedules.trigger(stack.client, agents.due)
        handle = stack.client.get_schedule_handle(schedules.schedule_id(agents.due))

        async def fired() -> str | None:
            recent = (await handle.describe()).info.recent_actions
            return recent[-1].action.workflow_id if recent else None

        sweep_id = await wait_for_async(fired, what="the triggered sweep")
        result = await stack.client.get_workflow_handle(sweep_id, result_type=SweepResult).result()
        started = result.started[agents.due]
        assert started > 0
        # The runs stop at their approval: their spans so far are enough.
        named = await wait_for(
            lambda: len((n := by_name(spans)).get("node.plan", [])) >= started and n,
            what="the runs' spans",
        )
    (sweep,) = [
        s
        for s in named["RunWorkflow:Sweep"]
        if s.attributes and s.attributes["temporalWorkflowID"] == sweep_id
    ]
    assert sweep.parent is None
    # The runs it starts hang under its activity, down to their nodes.
    (activity,) = named["RunActivity:sweep_accounts"]
    runs = {s.context.trace_id for s in named["RunWorkflow:AgentRun"] + named["node.plan"]}
    assert runs == {activity.context.trace_id}
    assert len(named["RunWorkflow:AgentRun"]) >= started
