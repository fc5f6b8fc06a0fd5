"""Every policy case (policies/**/cases.yaml), on both in-process engines (regorus,
regopy) and on a remote OPA-API server."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import yaml

from autopilot.runtime.policy.cases import Case, load_cases, run_case
from autopilot.runtime.policy.engine import decide_raw
from autopilot.runtime.policy.opa import OpaEngine
from autopilot.runtime.policy.rego import RegoEngine
from autopilot.runtime.policy.regorus_engine import RegorusEngine
from tests.conftest import REPO
from tests.policies.opa_server import OpaLikeServer, opa_like_server

POLICIES = REPO / "policies"
CASES = load_cases(POLICIES)
BASES = yaml.safe_load((POLICIES / "cases_base.yaml").read_text())
ENGINES = {"regorus": RegorusEngine(POLICIES), "regopy": RegoEngine(POLICIES)}


@pytest.fixture(scope="module")
def opa_server() -> Iterator[OpaLikeServer]:
    with opa_like_server(POLICIES) as server:
        yield server


@pytest.fixture(scope="module")
def opa(opa_server: OpaLikeServer) -> OpaEngine:
    return OpaEngine(opa_server.url, POLICIES, timeout_s=2)


def test_there_are_enough_cases_for_every_package() -> None:
    assert len(CASES) >= 60
    packages = {c.source.split("/")[1] for c in CASES if c.source.count("/") == 2}
    assert packages >= {
        "input",
        "scope",
        "budget",
        "discount",
        "approval",
        "contact",
        "consent",
        "residency",
    }


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_case_in_process(case: Case, engine: str) -> None:
    result = run_case(ENGINES[engine], case, BASES)
    assert result.ok, f"{case.source}: {result.problems}"
    assert all(v.msg for v in result.decision.deny) and all(
        a.reason for a in result.decision.approval
    )


@pytest.mark.parametrize("mode", ["error", "slow", "undefined"])
def test_remote_engine_trouble_is_a_deny(opa_server: OpaLikeServer, mode: str) -> None:
    engine = OpaEngine(opa_server.url, POLICIES, timeout_s=0.5)
    opa_server.mode = mode
    try:
        decision = decide_raw(engine, BASES["email"])
    finally:
        opa_server.mode = "ok"
    assert decision.outcome == "deny" and [v.code for v in decision.deny] == ["policy.unavailable"]


def test_unreachable_opa_is_a_deny() -> None:
    from tests.conftest import free_port

    engine = OpaEngine(f"http://127.0.0.1:{free_port()}", POLICIES, timeout_s=0.5)
    assert [v.code for v in decide_raw(engine, BASES["email"]).deny] == ["policy.unavailable"]


def test_bad_opa_url_is_refused() -> None:
    with pytest.raises(ValueError):
        OpaEngine("opa:8181", POLICIES)
