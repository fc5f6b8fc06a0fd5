"""Worker start-up: services built once, the graph registered with the LangGraph plugin."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager

from temporalio.client import Client
from temporalio.exceptions import TemporalError
from temporalio.langgraph import LangGraphPlugin
from temporalio.service import RPCError
from temporalio.worker import Worker

from autopilot.runtime import services as services_mod
from autopilot.runtime.accounts.ingest import Ingest
from autopilot.runtime.audit.checkpoints import run_checkpoints
from autopilot.runtime.audit.keys import load_or_create
from autopilot.runtime.execution.outcomes import run_reconciler
from autopilot.runtime.graph import local
from autopilot.runtime.graph.builder import build_graphs
from autopilot.runtime.health.scoring import run_daily_rescore
from autopilot.runtime.llm.activity import LlmActivities
from autopilot.runtime.observability import tracing
from autopilot.runtime.observability.runs import RunMetricsInterceptor
from autopilot.runtime.schedules import ensure_schedules
from autopilot.runtime.services import Services
from autopilot.workflows.agent_run.activities import ApprovalActivities
from autopilot.workflows.agent_run.workflow import AgentRunWorkflow
from autopilot.workflows.search import ensure_search_attributes
from autopilot.workflows.sweep.activities import SweepActivities
from autopilot.workflows.sweep.workflow import SweepWorkflow

log = logging.getLogger(__name__)


def build_worker(
    client: Client, services: Services, task_queue: str, **worker_kwargs: object
) -> Worker:
    services_mod.register(task_queue, services)
    # Traces (workflow and activity spans under the caller's) and the run counters; a
    # client that traces already passes its tracing interceptor on to the worker.
    interceptors = [
        *worker_kwargs.pop("interceptors", []),  # type: ignore[misc]
        *([] if tracing.has_tracing(client) else [tracing.interceptor()]),
        RunMetricsInterceptor(),
    ]
    approvals = ApprovalActivities()
    sweep = SweepActivities()
    return Worker(
        client,
        task_queue=task_queue,
        workflows=[AgentRunWorkflow, SweepWorkflow],
        activities=[
            approvals.open_approval,
            approvals.record_vote,
            approvals.close_approval,
            approvals.escalate,
            approvals.regate_edit,
            sweep.sweep_accounts,
            LlmActivities().call_model,  # model calls (runtime/llm): budget, retries, ledger
            *local.STEPS,  # the action path's steps, run as local activities
        ],
        plugins=[
            LangGraphPlugin(
                graphs=build_graphs(max_send_backoff_s=services.settings.send_max_backoff_s)
            )
        ],
        interceptors=interceptors,
        activity_executor=ThreadPoolExecutor(max_workers=32),
        max_concurrent_activities=32,
        **worker_kwargs,  # type: ignore[arg-type]
    )


async def prepare_namespace(ingest: Ingest) -> None:
    """Search attributes (the runs `ingest` starts carry them where the server has them)
    and the sweep schedules of the specs. Idempotent; a server that cannot is logged and
    the worker goes on without."""
    ingest.search_attributes = await ensure_search_attributes(ingest.client)
    try:
        changes = await ensure_schedules(ingest.client, ingest.specs, ingest.task_queue)
    except (RPCError, TemporalError) as err:
        log.warning("sweep schedules not set up (%s): sweeps run only on demand", err)
        return
    if changed := {k: v for k, v in changes.items() if v != "unchanged"}:
        log.info("sweep schedules: %s", changed)


@asynccontextmanager
async def beside_worker(ingest: Ingest, services: Services) -> AsyncIterator[None]:
    """What runs next to a worker: the namespace's search attributes and sweep schedules
    (set up once), the event dispatcher (runs of events stored while Temporal was
    unreachable), the daily Health 2.0 rescore, the reconciler of unknown outcomes and
    the signed audit checkpoints; stopped on exit."""
    await prepare_namespace(ingest)
    stop = asyncio.Event()
    tasks = [
        asyncio.create_task(ingest.run_dispatcher(stop)),
        asyncio.create_task(run_daily_rescore(ingest.db, stop)),
        asyncio.create_task(run_reconciler(services, stop)),
        asyncio.create_task(
            run_checkpoints(
                services.db,
                load_or_create(services.settings.audit_key_path),
                stop,
                every=services.settings.audit_checkpoint_every,
            )
        ),
    ]
    try:
        yield
    finally:
        stop.set()
        await asyncio.gather(*tasks)
