"""The daily sweep and its schedules, on the Temporal dev server: due scheduled agents
start once per account and day, runs are found by their search attributes, and the
schedules follow the agent specs."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from sqlmodel import Session, select
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.service import RPCError
from temporalio.testing import WorkflowEnvironment

from autopilot.runtime import schedules
from autopilot.runtime.accounts.ingest import Ingest
from autopilot.runtime.agents.triggers import SCHEDULE_EVENT
from autopilot.runtime.contracts.agent_spec import AgentSpec
from autopilot.runtime.devstack.temporal import temporal_binary
from autopilot.runtime.store.accounts import Account
from autopilot.runtime.store.events import Event
from autopilot.runtime.worker import prepare_namespace
from autopilot.workflows.search import ensure_search_attributes
from autopilot.workflows.sweep.activities import SweepInput, SweepResult
from autopilot.workflows.sweep.workflow import SweepWorkflow
from tests.conftest import NOW, Stack, make_settings, wait_for_async
from tests.runtime.test_cli import arun_cli, stack_env


def agent_spec(name: str, **extra: Any) -> AgentSpec:
    return AgentSpec.model_validate(
        {
            "name": name,
            "description": "sweep test agent",
            "goal": {"description": "x", "metric": "none"},
            "tools": ["crm_update_field"],
            "scopes": ["crm:write"],
            "playbook": [
                {
                    "id": "f",
                    "do": ["crm_status"],
                    "args": {
                        "account_id": "{{ account.id }}",
                        "field": "swept",
                        "value": "{{ today }}",
                    },
                }
            ],
            **extra,
        }
    )


class Agents:
    """Agent names unique to the test: workflow and schedule ids are per agent, and the
    dev server is shared by the whole session."""

    def __init__(self) -> None:
        tag = uuid.uuid4().hex[:6]
        self.due = f"ent_{tag}"  # scheduled, for enterprise accounts
        self.never = f"never_{tag}"  # scheduled, but its trigger never holds for a sweep
        self.events = f"evt_{tag}"  # event-triggered only: no schedule

    def specs(
        self, due_cron: str = "0 6 * * *", segments: tuple[str, ...] = ("enterprise",)
    ) -> dict[str, AgentSpec]:
        return {
            self.due: agent_spec(self.due, schedule=due_cron, audience={"segments": segments}),
            self.never: agent_spec(self.never, schedule="0 7 * * *", trigger='event.type == "nps"'),
            self.events: agent_spec(self.events, trigger='event.type == "nps"'),
        }


def write_specs(folder: Path, specs: dict[str, AgentSpec]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, spec in specs.items():
        data = spec.model_dump(mode="json", exclude_defaults=True)
        (folder / f"{name}.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    return folder


@asynccontextmanager
async def sweep_stack(
    stack_factory: Any, tmp_path: Path, agents: Agents, specs: dict[str, AgentSpec] | None = None
) -> AsyncIterator[Stack]:
    folder = write_specs(tmp_path / "agents", specs or agents.specs())
    settings = make_settings(tmp_path, agents_dir=folder)
    async with stack_factory(settings=settings, accounts=40) as stack:
        try:
            yield stack
        finally:
            for name in (agents.due, agents.never, agents.events):
                try:
                    await stack.client.get_schedule_handle(schedules.schedule_id(name)).delete()
                except RPCError:
                    pass  # never created, or deleted by the test


def active_enterprise(stack: Stack) -> set[str]:
    with Session(stack.db) as s:
        rows = s.exec(
            select(Account.id).where(Account.segment == "enterprise", Account.status == "active")
        )
        return set(rows)


def churn(stack: Stack, account_id: str) -> None:
    with Session(stack.db) as s:
        row = s.get(Account, account_id)
        assert row is not None
        row.status, row.churned_at = "churned", NOW.date()
        s.add(row)
        s.commit()


async def run_ids(client: Client, query: str, *, expect: int) -> list[str]:
    """Workflow ids (one per run, closed runs included) matching `query`, once the
    (eventually consistent) visibility store lists `expect` of them."""

    async def listed() -> list[str] | None:
        ids = [wf.id async for wf in client.list_workflows(query)]
        return ids if len(ids) >= expect else None

    return await wait_for_async(listed, what=f"{expect} run(s) for {query}")


async def sweep_now(stack: Stack, agents: list[str] | None = None) -> SweepResult:
    return await stack.client.execute_workflow(
        SweepWorkflow.run,
        SweepInput(agents=agents),
        id=f"sweep:test:{uuid.uuid4().hex[:8]}",
        task_queue=stack.task_queue,
        result_type=SweepResult,
        execution_timeout=timedelta(seconds=60),
    )


async def test_sweep_starts_each_due_agent_once_per_account_per_day(
    stack_factory: Any, tmp_path: Path
) -> None:
    agents = Agents()
    async with sweep_stack(stack_factory, tmp_path, agents) as stack:
        gone = min(active_enterprise(stack))
        churn(stack, gone)
        due = active_enterprise(stack)
        assert due and gone not in due
        with Session(stack.db) as s:
            active = len(s.exec(select(Account.id).where(Account.status == "active")).all())

        first = await sweep_now(stack)
        # Only the enterprise audience, not the churned account; the agent whose trigger
        # does not hold for a sweep, and the event-only agent, start nothing.
        assert first == SweepResult(accounts=active, started={agents.due: len(due)})
        started = await run_ids(stack.client, f"AutopilotAgent = '{agents.due}'", expect=len(due))
        assert sorted(started) == sorted(f"agent:{agents.due}:{a}" for a in due)
        one = min(due)
        query = f"AutopilotAgent = '{agents.due}' AND AutopilotAccount = '{one}'"
        assert await run_ids(stack.client, query, expect=1) == [f"agent:{agents.due}:{one}"]
        segment = f"AutopilotAgent = '{agents.due}' AND AutopilotSegment = 'enterprise'"
        assert len(await run_ids(stack.client, segment, expect=len(due))) == len(due)

        again = await sweep_now(stack)
        assert again == SweepResult(accounts=active, started={})
        assert await sweep_now(stack, [agents.due]) == SweepResult(accounts=active, started={})
        with Session(stack.db) as s:
            events = s.exec(select(Event).where(Event.type == SCHEDULE_EVENT)).all()
        assert sorted(e.account_id for e in events) == sorted(due)
        assert {e.payload["day"] for e in events} == {NOW.date().isoformat()}
        # Still one run per account: the second sweep started none.
        runs = [wf async for wf in stack.client.list_workflows(f"AutopilotAgent = '{agents.due}'")]
        assert len(runs) == len(due)


async def test_concurrent_sweeps_in_small_batches_start_each_run_once(
    stack_factory: Any, tmp_path: Path
) -> None:
    agents = Agents()
    every = agents.specs(segments=())  # every account is due: the two sweeps collide
    async with sweep_stack(stack_factory, tmp_path, agents, every) as stack:
        stack.ingest.search_attributes = await ensure_search_attributes(stack.client)
        assert stack.ingest.search_attributes
        with Session(stack.db) as s:
            due = set(s.exec(select(Account.id)))
        beats: list[int] = []
        one, two = await asyncio.gather(
            stack.ingest.sweep(NOW.date(), batch=7, on_batch=beats.append),
            stack.ingest.sweep(NOW.date(), [agents.due, agents.never], batch=5),
        )
        swept = [(s.account_id, agent) for s in one + two for agent in s.agents]
        assert sorted(swept) == sorted((a, agents.due) for a in due)
        assert beats == [7, 7, 7, 7, 7, 5]  # 40 accounts, in batches of 7
        assert await stack.ingest.sweep(NOW.date(), org_id="another_org") == []
        started = await run_ids(stack.client, f"AutopilotAgent = '{agents.due}'", expect=len(due))
        assert len(started) == len(due)


async def test_schedules_follow_the_specs_and_pause_unpause_and_trigger(
    stack_factory: Any, tmp_path: Path
) -> None:
    agents = Agents()
    async with sweep_stack(stack_factory, tmp_path, agents) as stack:
        client, tq = stack.client, stack.task_queue
        due_id, never_id = schedules.schedule_id(agents.due), schedules.schedule_id(agents.never)
        created = await schedules.ensure_schedules(client, stack.services.specs, tq)
        assert created == {due_id: "created", never_id: "created"}
        assert await schedules.ensure_schedules(client, stack.services.specs, tq) == {
            due_id: "unchanged",
            never_id: "unchanged",
        }
        view = await schedules.describe(client, agents.due)
        assert (view.cron, view.paused, view.last_run, view.task_queue) == (
            "0 6 * * *",
            False,
            None,
            tq,
        )
        assert view.next_run is not None and (view.next_run.hour, view.next_run.minute) == (6, 0)

        async def listed() -> list[schedules.ScheduleView] | None:
            mine = [v for v in await schedules.list_schedules(client) if v.task_queue == tq]
            return mine if len(mine) == 2 else None

        assert [v.id for v in await wait_for_async(listed, what="2 schedules")] == sorted(
            [due_id, never_id]
        )

        paused = await schedules.pause(client, agents.due)
        assert paused.paused and paused.next_run is None
        # A new cron is applied and the pause kept; an agent without a schedule loses it.
        specs = agents.specs(due_cron="30 5 * * *")
        del specs[agents.never]
        changed = await schedules.ensure_schedules(client, specs, tq)
        assert changed == {due_id: "updated", never_id: "deleted"}
        view = await schedules.describe(client, agents.due)
        assert (view.cron, view.paused) == ("30 5 * * *", True)
        with pytest.raises(schedules.ScheduleNotFound):
            await schedules.describe(client, agents.never)

        view = await schedules.unpause(client, agents.due)
        assert not view.paused and view.next_run is not None
        assert (view.next_run.hour, view.next_run.minute) == (5, 30)

        await schedules.trigger(client, agents.due)
        handle = client.get_schedule_handle(due_id)

        async def fired() -> str | None:
            recent = (await handle.describe()).info.recent_actions
            return recent[-1].action.workflow_id if recent else None

        sweep_id = await wait_for_async(fired, what="the triggered sweep")
        result = await client.get_workflow_handle(sweep_id, result_type=SweepResult).result()
        due = active_enterprise(stack)
        assert result.started == {agents.due: len(due)}
        assert (await schedules.describe(client, agents.due)).last_run is not None
        one = min(due)
        query = f"AutopilotAccount = '{one}' AND AutopilotAgent = '{agents.due}'"
        assert await run_ids(client, query, expect=1) == [f"agent:{agents.due}:{one}"]

        with pytest.raises(schedules.ScheduleNotFound):
            await schedules.pause(client, f"no_such_{agents.due}")


async def test_cli_lists_pauses_and_sweeps(stack_factory: Any, tmp_path: Path) -> None:
    agents = Agents()
    async with sweep_stack(stack_factory, tmp_path, agents) as stack:
        await schedules.ensure_schedules(stack.client, stack.services.specs, stack.task_queue)
        env = stack_env(stack)
        proc = await arun_cli("schedules", "pause", agents.due, "--json", env=env)
        assert proc.returncode == 0, proc.stderr
        assert json.loads(proc.stdout)["schedule"]["paused"] is True

        async def listed() -> dict[str, Any] | None:
            proc = await arun_cli("schedules", "list", "--json", env=env)
            assert proc.returncode == 0, proc.stderr
            mine = {s["id"]: s for s in json.loads(proc.stdout)["schedules"]}
            return mine if schedules.schedule_id(agents.due) in mine else None

        shown = (await wait_for_async(listed, timeout=60, what="the schedule listed"))[
            schedules.schedule_id(agents.due)
        ]
        assert (shown["cron"], shown["paused"], shown["next_run"]) == ("0 6 * * *", True, None)

        proc = await arun_cli("schedules", "unpause", f"no_such_{agents.due}", "--json", env=env)
        assert proc.returncode == 2 and json.loads(proc.stdout)["ok"] is False

        proc = await arun_cli("sweep", "--agent", agents.due, "--json", env=env)
        assert proc.returncode == 0, proc.stderr
        out = json.loads(proc.stdout)
        assert (out["accounts"], out["started"]) == (
            40,
            {agents.due: len(active_enterprise(stack))},
        )


async def test_worker_start_sets_up_attributes_and_schedules_where_the_server_can(
    stack_factory: Any, tmp_path: Path
) -> None:
    agents = Agents()
    async with sweep_stack(stack_factory, tmp_path, agents) as stack:
        assert not stack.ingest.search_attributes  # off until the namespace is known to have them
        await prepare_namespace(stack.ingest)
        assert stack.ingest.search_attributes
        assert (await schedules.describe(stack.client, agents.due)).cron == "0 6 * * *"
        await prepare_namespace(stack.ingest)  # idempotent

        skipping = await WorkflowEnvironment.start_time_skipping(
            test_server_existing_path=temporal_binary("temporal-test-server"),
            data_converter=pydantic_data_converter,
        )
        try:
            assert await ensure_search_attributes(skipping.client) is False
            elsewhere = Ingest(
                stack.db,
                skipping.client,
                stack.services.specs,
                task_queue=stack.task_queue,
                policy=stack.services.policy,
            )
            await prepare_namespace(elsewhere)  # no operator service, no schedules: goes on
            assert not elsewhere.search_attributes
        finally:
            await skipping.shutdown()
