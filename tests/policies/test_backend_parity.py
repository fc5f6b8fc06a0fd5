"""Backend parity across two independent Rego implementations: the product's remote
backend (OpaEngine, over HTTP) against a loopback OPA Data API server that evaluates
with regorus, and the in-process backend (RegoEngine, regopy), on every policy case.

Decisions are compared on what they decide, not on their reason texts: the engines
format computed floats differently in sprintf("%v") (71.9 against 71.90000000000001)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import regopy
import requests
import yaml

from autopilot.runtime.contracts.policy import Decision
from autopilot.runtime.policy.cases import Case, load_cases, run_case
from autopilot.runtime.policy.engine import UNAVAILABLE
from autopilot.runtime.policy.opa import OpaEngine
from autopilot.runtime.policy.rego import RegoEngine
from tests.conftest import REPO
from tests.policies.opa_server import OpaLikeServer, opa_like_server

POLICIES = REPO / "policies"
CASES = load_cases(POLICIES)
BASES = yaml.safe_load((POLICIES / "cases_base.yaml").read_text())
REGO = RegoEngine(POLICIES)

# Comparisons across types, where regopy departs from OPA's ordering
# (null < boolean < number < string) and regorus follows it.
PROBE = 'package probe\n\nimport rego.v1\n\nstring_below_number := "a" < 1\nnull_below_number := null < 1\n'
OPA_ORDER = {"string_below_number": False, "null_below_number": True}


@pytest.fixture(scope="module")
def opa_server() -> Iterator[OpaLikeServer]:
    with opa_like_server(POLICIES) as server:
        yield server


@pytest.fixture(scope="module")
def opa(opa_server: OpaLikeServer) -> OpaEngine:
    return OpaEngine(opa_server.url, POLICIES, timeout_s=5)


def _regopy_answer(rego: str) -> Any:
    interp = regopy.Interpreter()
    interp.add_module("probe.rego", rego)
    return interp.query("x = data.probe").results[0].bindings["x"]


def test_the_loopback_server_is_not_the_in_process_engine(tmp_path: Path) -> None:
    assert _regopy_answer(PROBE) != OPA_ORDER  # else the probe tells the engines apart no more
    (tmp_path / "probe").mkdir()
    (tmp_path / "probe" / "policy.rego").write_text(PROBE)
    with opa_like_server(tmp_path) as server:
        remote = requests.post(f"{server.url}/v1/data/probe", json={"input": {}}, timeout=5).json()
    assert remote == {"result": OPA_ORDER}


def _shape(decision: Decision) -> dict[str, Any]:
    return {
        "outcome": decision.outcome,
        "allow": decision.allow,
        "require_approval": decision.require_approval,
        "deny": sorted({v.code for v in decision.deny}),
        "roles": decision.roles,
        "sla": sorted((a.role, a.sla_hours) for a in decision.approval),
        "obligations": Counter(o.get("type") for o in decision.obligations),
    }


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_independent_backends_decide_alike(case: Case, opa: OpaEngine) -> None:
    local = run_case(REGO, case, BASES).decision
    remote = run_case(opa, case, BASES)
    assert UNAVAILABLE not in {v.code for v in remote.decision.deny}, (
        f"{case.source}: the OPA backend failed"
    )
    assert remote.ok, f"{case.source} on the OPA backend: {remote.problems}"
    assert _shape(remote.decision) == _shape(local)
