"""A real store and policy engine for the planner's tests: the seeded portfolio, the
shipped agents and the real gate (regopy) on the real bundle."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import date
from pathlib import Path

from sqlmodel import Session

from autopilot.runtime.accounts.snapshot import get_snapshot
from autopilot.runtime.agents.playbook import RunFacts
from autopilot.runtime.contracts.account import AccountSnapshot, Assessment
from autopilot.runtime.contracts.action import ProposedAction
from autopilot.runtime.contracts.agent_spec import AgentSpec
from autopilot.runtime.contracts.policy import ActorIn, Decision
from autopilot.runtime.devstack.seed import seed_portfolio
from autopilot.runtime.llm.config import LlmConfig
from autopilot.runtime.llm.double import ChatDouble
from autopilot.runtime.llm.messages import ChatResult, Message, ToolDef
from autopilot.runtime.policy.gate import gate_action
from autopilot.runtime.services import Services, build_services
from tests.conftest import NOW, make_settings

TODAY: date = NOW.date()
DOUBLE = LlmConfig(provider="openai", model="double")


def services(tmp_path: Path, n: int = 40) -> Services:
    svc = build_services(make_settings(tmp_path), clock=lambda: NOW)
    seed_portfolio(svc.db, n=n, today=TODAY)
    return svc


def snapshot(svc: Services, account_id: str) -> AccountSnapshot:
    with Session(svc.db) as s:
        snap = get_snapshot(s, account_id=account_id, today=TODAY)
    assert snap is not None
    return snap


def at_risk(svc: Services, account_id: str, churn_risk: float = 0.4) -> AccountSnapshot:
    """The account with its renewal in doubt (the renewal agent's proposal step runs);
    churn risk is not in the policy input, so the gate judges the same account."""
    return snapshot(svc, account_id).model_copy(update={"churn_risk": churn_risk})


def assessment(account: AccountSnapshot) -> Assessment:
    return Assessment(
        health=account.health, risk=account.churn_risk, reasons=account.health_reasons
    )


def facts() -> RunFacts:
    return RunFacts(started=TODAY)


def via_double(
    double: ChatDouble,
) -> Callable[[LlmConfig, Sequence[Message], Sequence[ToolDef] | None], ChatResult]:
    return lambda _config, messages, tools: double.chat(messages, tools)


async def gate(
    svc: Services, spec: AgentSpec, account: AccountSnapshot, action: ProposedAction, key: str
) -> Decision:
    """The real gate on the real bundle (no reservation: nothing is booked)."""
    return await gate_action(
        svc,
        run_key=key,
        action=action,
        account=account,
        spec=spec,
        actor=ActorIn(type="agent", id=spec.name),
        pinned_bundle=None,
    )
