"""The model-call activity in a real Temporal worker against the loopback server: 429s
backed off as the provider asks, cost booked to the ledger once per call however many
attempts it took, the quarterly model budget enforced before any call, no key stored."""

from __future__ import annotations

import logging
import uuid
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import pytest
from pydantic import BaseModel
from sqlmodel import Session, select
from temporalio import workflow
from temporalio.client import WorkflowFailureError
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

# Only the workflow's input and output cross the sandbox; passed through, not re-imported.
with workflow.unsafe.imports_passed_through():
    from autopilot.runtime import services as services_mod
    from autopilot.runtime.contracts.agent_spec import LlmPlanner
    from autopilot.runtime.devstack.llm_server import LlmServer, Reply
    from autopilot.runtime.ledger.model import model_spend
    from autopilot.runtime.llm.activity import LlmActivities
    from autopilot.runtime.llm.calls import RETRY_POLICY, ModelCall, ModelReply, call_model
    from autopilot.runtime.llm.config import LlmConfig
    from autopilot.runtime.llm.messages import Message, ToolDef
    from autopilot.runtime.services import Services, build_services
    from autopilot.runtime.store.customer import CostEntry
    from tests.conftest import NOW, make_settings, wait_for
    from tests.runtime.llm.conftest import OPENAI_KEY

AGENT = "renewal"
ACCOUNT = "acc-llm-1"


class CallInput(BaseModel):
    call: ModelCall
    start_to_close_s: float = 90
    fast_retries: bool = False  # 0.2 s between attempts instead of the production back-off


@workflow.defn(name="LlmCallTest")
class CallWorkflow:
    @workflow.run
    async def run(self, inp: CallInput) -> ModelReply:
        policy = RETRY_POLICY
        if inp.fast_retries:
            policy = RetryPolicy(
                initial_interval=timedelta(seconds=0.2),
                maximum_attempts=4,
                non_retryable_error_types=RETRY_POLICY.non_retryable_error_types,
            )
        return await call_model(
            inp.call, start_to_close=timedelta(seconds=inp.start_to_close_s), retry_policy=policy
        )


@dataclass
class Env:
    services: Services
    env: WorkflowEnvironment
    task_queue: str

    async def run(self, inp: CallInput) -> ModelReply:
        return await self.env.client.execute_workflow(
            "LlmCallTest",
            inp,
            id=f"llm-{uuid.uuid4().hex[:8]}",
            task_queue=self.task_queue,
            result_type=ModelReply,
        )

    def entries(self) -> list[CostEntry]:
        with Session(self.services.db) as s:
            return list(s.exec(select(CostEntry).where(CostEntry.kind == "model")).all())


@pytest.fixture
async def env(temporal_env: WorkflowEnvironment, tmp_path: Path, keys: None) -> AsyncIterator[Env]:
    from autopilot.runtime.devstack.seed import seed_portfolio

    services = build_services(make_settings(tmp_path), clock=lambda: NOW)
    seed_portfolio(services.db, n=1, today=NOW.date())
    task_queue = f"tq-llm-{uuid.uuid4().hex[:8]}"
    services_mod.register(task_queue, services)
    worker = Worker(
        temporal_env.client,
        task_queue=task_queue,
        workflows=[CallWorkflow],
        activities=[LlmActivities().call_model],
        activity_executor=ThreadPoolExecutor(4),
    )
    try:
        async with worker:
            yield Env(services, temporal_env, task_queue)
    finally:
        services_mod.unregister(task_queue)
        services.db.dispose()


def first_account(services: Services) -> str:
    from autopilot.runtime.store.accounts import Account

    with Session(services.db) as s:
        row = s.exec(select(Account.id)).first()
    assert row is not None
    return row


def a_call(server: LlmServer, services: Services, **config: object) -> ModelCall:
    cfg = LlmConfig.model_validate(
        {"provider": "openai", "model": "gpt-4o-mini", "base_url": server.base_url, **config}
    )
    return ModelCall(
        config=cfg,
        messages=[Message(role="user", content="Plan the renewal.")],
        tools=[ToolDef(name="send_email")],
        agent=AGENT,
        account_id=first_account(services),
    )


async def test_a_429_is_backed_off_as_asked_and_booked_once(env: Env, server: LlmServer) -> None:
    server.push(
        Reply.error(429, retry_after="3"), Reply(text="done", input_tokens=2000, output_tokens=1000)
    )
    reply = await env.run(CallInput(call=a_call(server, env.services)))
    assert reply.result.text == "done" and reply.booked
    assert len(server.requests) == 2
    # The second attempt waited for the provider's Retry-After (a lower bound, not a timing).
    # The default first interval is 2 s, so a gap of 3 s is the Retry-After honoured.
    assert server.requests[1].at - server.requests[0].at >= 2.95
    (entry,) = env.entries()
    assert entry.amount == pytest.approx(reply.result.cost) and entry.amount > 0
    assert (entry.agent, entry.account_id) == (AGENT, reply_account(env))
    assert "2000 in, 1000 out" in entry.note
    with Session(env.services.db) as s:
        assert model_spend(s, agent=AGENT, now=NOW) == pytest.approx(entry.amount)
    # The key went to the server and nowhere into the ledger.
    assert server.requests[0].headers["authorization"] == f"Bearer {OPENAI_KEY}"
    assert OPENAI_KEY not in repr(entry.model_dump())


def reply_account(env: Env) -> str:
    return first_account(env.services)


async def test_an_attempt_that_finishes_after_its_retry_is_not_booked_twice(
    env: Env, server: LlmServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="autopilot.runtime.llm.activity")
    # Attempt 1 outlives its 2 s start-to-close; attempt 2 answers at once. Both calls
    # reached the model, but it is one call of the workflow's: booked once.
    server.push(Reply(text="slow", delay_s=4), Reply(text="fast"))
    reply = await env.run(
        CallInput(call=a_call(server, env.services), start_to_close_s=2, fast_retries=True)
    )
    assert reply.result.text == "fast"
    await wait_for(
        lambda: len([r for r in caplog.records if r.getMessage().startswith("llm call")]) == 2,
        timeout=30,
        what="the timed-out attempt to finish",
    )
    assert len(server.requests) == 2
    assert len(env.entries()) == 1


async def test_500_is_retried_and_400_is_not(env: Env, server: LlmServer) -> None:
    server.push(Reply.error(500), Reply(text="after 500"))
    reply = await env.run(CallInput(call=a_call(server, env.services), fast_retries=True))
    assert reply.result.text == "after 500" and len(server.requests) == 2
    server.push(Reply.error(400), Reply(text="never"))
    with pytest.raises(WorkflowFailureError) as info:
        await env.run(CallInput(call=a_call(server, env.services), fast_retries=True))
    assert cause_type(info.value) == "llm.rejected"
    assert len(server.requests) == 3
    assert len(env.entries()) == 1


async def test_the_guard_fails_the_activity_without_retrying(env: Env, server: LlmServer) -> None:
    call = a_call(server, env.services, base_url="https://api.openai.com/v1")
    with pytest.raises(WorkflowFailureError) as info:
        await env.run(CallInput(call=call, fast_retries=True))
    assert cause_type(info.value) == "llm.guard"
    assert server.requests == [] and env.entries() == []


async def test_an_agent_over_its_model_budget_makes_no_call(env: Env, server: LlmServer) -> None:
    spec = env.services.specs[AGENT]
    budget = LlmPlanner(kind="llm", model_budget_per_quarter=0.01)
    env.services.specs[AGENT] = spec.model_copy(update={"planner": budget})
    server.push(Reply(text="first", input_tokens=40_000, output_tokens=10_000))
    first = await env.run(CallInput(call=a_call(server, env.services)))
    assert first.result.cost >= 0.01  # this call spends the budget
    with pytest.raises(WorkflowFailureError) as info:
        await env.run(CallInput(call=a_call(server, env.services)))
    assert cause_type(info.value) == "llm.budget_exceeded"
    assert len(server.requests) == 1 and len(env.entries()) == 1


def cause_type(err: WorkflowFailureError) -> str | None:
    assert isinstance(err.cause, ActivityError) and isinstance(err.cause.cause, ApplicationError)
    return err.cause.cause.type
