"""The sweep's activity: evaluate every active account and start the runs due."""

from __future__ import annotations

import asyncio
from collections import Counter

from pydantic import BaseModel
from temporalio import activity

from autopilot.runtime import services
from autopilot.runtime.accounts.ingest import Ingest
from autopilot.workflows.search import ensure_search_attributes
from autopilot.workflows.sweep.model_card import refresh_card


class SweepInput(BaseModel):
    agents: list[str] | None = None  # None: every scheduled agent
    org_id: str | None = None  # None: every organisation


class SweepResult(BaseModel):
    accounts: int  # active accounts evaluated
    started: dict[str, int] = {}  # agent -> runs this sweep started (or queued to start)
    # The day's model card (created | updated | unchanged | failed); None: no agent of
    # this sweep keeps it. Put on record even when no account is due (model_card.py).
    model_card: str | None = None


class SweepActivities:
    @activity.defn(name="sweep_accounts")
    async def sweep_accounts(self, input: SweepInput) -> SweepResult:
        """Idempotent per agent, account and day, so a retry only finishes the job."""
        svc = services.current()
        client = activity.client()
        unknown = sorted(set(input.agents or ()) - set(svc.specs))
        if unknown:
            activity.logger.warning("sweep of agents this worker does not know: %s", unknown)
        ingest = Ingest(
            svc.db,
            client,
            svc.specs,
            task_queue=activity.info().task_queue,
            policy=svc.policy,
            search_attributes=await ensure_search_attributes(client),
        )
        wf_id = activity.info().workflow_id or "sweep"
        card = await asyncio.to_thread(refresh_card, svc, input.agents, wf_id)
        evaluated = 0

        def batch_done(n: int) -> None:
            nonlocal evaluated
            evaluated += n
            activity.heartbeat(evaluated)

        stored = await ingest.sweep(
            svc.clock().date(), input.agents, input.org_id, on_batch=batch_done
        )
        started = Counter(agent for item in stored for agent in item.agents)
        return SweepResult(
            accounts=evaluated, started=dict(sorted(started.items())), model_card=card
        )
