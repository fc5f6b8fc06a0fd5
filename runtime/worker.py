"""Worker start-up: services built once, the graph registered with the LangGraph plugin."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager

from temporalio.client import Client
from temporalio.langgraph import LangGraphPlugin
from temporalio.worker import Worker

from autopilot.runtime import services as services_mod
from autopilot.runtime.accounts.ingest import Ingest
from autopilot.runtime.graph.builder import GRAPH_NAME, build_graph
from autopilot.runtime.health.scoring import run_daily_rescore
from autopilot.runtime.services import Services
from autopilot.workflows.agent_run.activities import ApprovalActivities
from autopilot.workflows.agent_run.workflow import AgentRunWorkflow


def build_worker(
    client: Client, services: Services, task_queue: str, **worker_kwargs: object
) -> Worker:
    services_mod.register(task_queue, services)
    approvals = ApprovalActivities()
    return Worker(
        client,
        task_queue=task_queue,
        workflows=[AgentRunWorkflow],
        activities=[
            approvals.open_approval,
            approvals.record_vote,
            approvals.close_approval,
            approvals.escalate,
            approvals.regate_edit,
        ],
        plugins=[LangGraphPlugin(graphs={GRAPH_NAME: build_graph()})],
        activity_executor=ThreadPoolExecutor(max_workers=32),
        max_concurrent_activities=32,
        **worker_kwargs,  # type: ignore[arg-type]
    )


@asynccontextmanager
async def beside_worker(ingest: Ingest) -> AsyncIterator[None]:
    """What runs next to a worker: the event dispatcher (runs of events stored while
    Temporal was unreachable) and the daily Health 2.0 rescore; stopped on exit."""
    stop = asyncio.Event()
    tasks = [
        asyncio.create_task(ingest.run_dispatcher(stop)),
        asyncio.create_task(run_daily_rescore(ingest.db, stop)),
    ]
    try:
        yield
    finally:
        stop.set()
        await asyncio.gather(*tasks)
