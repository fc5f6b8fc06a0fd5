"""Provider parity: the same agent on scripted cases planned (a) offline, (b) by the LLM
planner through the real openai client and (c) through the real anthropic client, both
against the loopback wire server, gets the same gate outcomes from the real gate."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from autopilot.runtime.agents import playbook
from autopilot.runtime.contracts.account import AccountSnapshot
from autopilot.runtime.contracts.action import ProposedAction
from autopilot.runtime.devstack.llm_server import LlmServer, Reply, llm_server
from autopilot.runtime.llm.client import chat
from autopilot.runtime.llm.config import LlmConfig
from autopilot.runtime.planning.planner import plan_with_llm
from autopilot.runtime.services import Services
from tests.runtime.planning import helpers as h

# (account, churn risk): a renewal in doubt in three segments, and one that is not.
CASES = [("acc-0001", 0.4), ("acc-0004", 0.35), ("acc-0007", 0.5), ("acc-0002", 0.05)]


@pytest.fixture(scope="module")
def svc(tmp_path_factory: pytest.TempPathFactory) -> Services:
    return h.services(tmp_path_factory.mktemp("parity"))


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch) -> Iterator[LlmServer]:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-openai")
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-test")
    monkeypatch.setenv("AUTOPILOT_LLM_LOOPBACK_ONLY", "1")
    with llm_server() as s:
        yield s


async def _outcomes(
    svc: Services, acc: AccountSnapshot, actions: list[ProposedAction], tag: str
) -> list[tuple[str, str, str, tuple[str, ...]]]:
    spec = svc.specs["renewal"]
    out = []
    for n, a in enumerate(actions):
        d = await h.gate(svc, spec, acc, a, f"parity:{tag}:{acc.id}:{n}")
        out.append((a.tool, a.option, d.outcome, tuple(sorted(v.code for v in d.deny))))
    return out


@pytest.mark.parametrize(("account_id", "risk"), CASES)
async def test_offline_openai_and_anthropic_plans_get_the_same_gate_outcomes(
    svc: Services, server: LlmServer, account_id: str, risk: float, tmp_path: Path
) -> None:
    spec = svc.specs["renewal"]
    acc = h.at_risk(svc, account_id, risk)
    offline = playbook.plan_stretch(
        spec,
        acc,
        h.assessment(acc),
        h.facts(),
        h.TODAY,
        tool_fields=lambda t: set(svc.tools.get(t).args_model.model_fields),
    )
    assert offline.actions, "a scripted case with nothing to decide proves nothing"
    expected = await _outcomes(svc, acc, offline.actions, "offline")
    print(account_id, expected)
    script = Reply(tool_calls=tuple((a.tool, dict(a.args)) for a in offline.actions))
    configs = {
        "openai": LlmConfig(provider="openai", model="gpt-4o-mini", base_url=server.base_url),
        "anthropic": LlmConfig(
            provider="anthropic", model="claude-3-5-haiku-latest", base_url=server.anthropic_url
        ),
    }
    for name, config in configs.items():
        server.push(script)
        plan = plan_with_llm(
            spec,
            acc,
            h.assessment(acc),
            h.facts(),
            h.TODAY,
            config=config,
            chat=chat,
            tools=svc.tools,
        )
        assert plan.fail_safe is None, plan.fail_safe
        assert await _outcomes(svc, acc, plan.stretch.actions, name) == expected, name
    # Both clients sent only the agent's granted tools as tool definitions.
    sent = [server.requests[-2].body["tools"], server.requests[-1].body["tools"]]
    assert {t["function"]["name"] for t in sent[0]} <= set(spec.tools)
    assert {t["name"] for t in sent[1]} <= set(spec.tools)
