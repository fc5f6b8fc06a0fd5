"""Table-driven tests of data.autopilot.decision, evaluated for real with regopy."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from autopilot.runtime.contracts.policy import PolicyInput
from autopilot.runtime.policy.engine import BUNDLE_MISMATCH, UNAVAILABLE, PolicyLoadError, RegoEngine
from tests.conftest import REPO

ENGINE = RegoEngine(REPO / "policies")


def make_input(*, tool: str = "send_offer", discount: Any = 0, segment: Any = "smb", arr: Any = 20_000,
               tools: list[str] | None = None, opted_out: bool = False) -> PolicyInput:
    return PolicyInput(
        action={"tool": tool, "discount_pct": discount, "recipient_opted_out": opted_out},
        account={"segment": segment, "arr": arr},
        agent={"name": "churn_rescue", "tools": tools if tools is not None else ["send_email", "send_offer"]},
        actor={"type": "agent", "id": "churn_rescue"},
        ledger={"spend_quarter": 0},
    )


CASES = [
    # name, input, outcome, deny codes, approval roles
    ("small email on an SMB account is allowed", make_input(tool="send_email"), "allow", set(), set()),
    ("discount at the auto-approve limit is allowed", make_input(discount=5), "allow", set(), set()),
    ("discount above auto-approve needs a manager", make_input(discount=8), "require_approval", set(), {"manager"}),
    ("discount above the segment cap is denied", make_input(discount=12), "deny", {"discount.above_cap"}, None),
    ("enterprise cap is higher", make_input(discount=18, segment="enterprise", arr=100_000),
     "require_approval", set(), {"manager"}),
    ("large account needs its CSM", make_input(tool="send_email", segment="enterprise", arr=300_000),
     "require_approval", set(), {"csm"}),
    ("both thresholds need both roles", make_input(discount=10, segment="enterprise", arr=300_000),
     "require_approval", set(), {"csm", "manager"}),
    ("tech-touch may not discount at all without approval", make_input(discount=1, segment="tech_touch"),
     "require_approval", set(), {"manager"}),
    ("a tool the agent is not granted is denied", make_input(tool="send_email", tools=["send_offer"]),
     "deny", {"tool.not_granted"}, None),
    ("an opted-out recipient is never contacted", make_input(tool="send_email", opted_out=True),
     "deny", {"consent.opted_out"}, None),
    ("an unknown segment is denied", make_input(segment="galactic"), "deny", {"segment.unknown"}, None),
    ("a missing discount denies", make_input(discount=None), "deny", {"input.invalid"}, None),
    ("a missing ARR denies", make_input(arr=None), "deny", {"input.invalid"}, None),
    ("a missing segment denies", make_input(segment=None), "deny", {"input.missing"}, None),
]


@pytest.mark.parametrize(("name", "policy_input", "outcome", "codes", "roles"), CASES, ids=[c[0] for c in CASES])
def test_decision_table(name: str, policy_input: PolicyInput, outcome: str, codes: set[str],
                        roles: set[str] | None) -> None:
    decision = ENGINE.decide(policy_input)
    assert decision.outcome == outcome
    assert codes <= {v.code for v in decision.deny}
    if outcome != "deny":
        assert {v.code for v in decision.deny} == set()
    if roles is not None:
        assert {a.role for a in decision.approval} == roles
    assert decision.bundle_hash == ENGINE.bundle_hash and len(decision.input_hash) == 64
    assert all(v.msg for v in decision.deny) and all(a.reason for a in decision.approval)


def test_empty_input_is_denied() -> None:
    decision = ENGINE.decide(PolicyInput(action={}, account={}, agent={}, actor={}, ledger={}))
    assert not decision.allow and decision.deny


def _write_policy(folder: Path, rego: str) -> Path:
    (folder / "autopilot").mkdir(parents=True)
    (folder / "autopilot" / "policy.rego").write_text(rego)
    return folder


def test_policy_evaluation_error_is_a_deny(tmp_path: Path) -> None:
    # Two values for one complete rule: an evaluation-time conflict.
    engine = RegoEngine(_write_policy(tmp_path, 'package autopilot\n\ndecision := {"allow": true}\n\n'
                                                'decision := {"allow": false} if input.action\n'))
    decision = engine.decide(make_input())
    assert decision.outcome == "deny" and [v.code for v in decision.deny] == [UNAVAILABLE]


def test_undefined_decision_is_a_deny(tmp_path: Path) -> None:
    engine = RegoEngine(_write_policy(tmp_path, "package autopilot\n\ndecision := 1 if false\n"))
    assert [v.code for v in engine.decide(make_input()).deny] == [UNAVAILABLE]


def test_malformed_decision_is_a_deny(tmp_path: Path) -> None:
    engine = RegoEngine(_write_policy(tmp_path, 'package autopilot\n\ndecision := {"allow": "yes"}\n'))
    assert [v.code for v in engine.decide(make_input()).deny] == [UNAVAILABLE]


def test_policy_that_does_not_compile_fails_at_load(tmp_path: Path) -> None:
    with pytest.raises(PolicyLoadError):
        RegoEngine(_write_policy(tmp_path, "package autopilot\n\ndecision := {{\n"))


def test_run_pinned_to_an_unknown_bundle_is_denied() -> None:
    decision = ENGINE.decide(make_input(tool="send_email"), pinned_bundle="0" * 64)
    assert [v.code for v in decision.deny] == [BUNDLE_MISMATCH]


def test_reload_keeps_pinned_bundle_and_ignores_unchanged_files(tmp_path: Path) -> None:
    import shutil

    shutil.copytree(REPO / "policies" / "autopilot", tmp_path / "autopilot")
    engine = RegoEngine(tmp_path)
    old = engine.bundle_hash
    assert engine.reload() == old
    data = tmp_path / "autopilot" / "data.json"
    data.write_text(data.read_text().replace('"discount_cap_pct": 10', '"discount_cap_pct": 12'))
    new = engine.reload()
    assert new != old
    assert engine.decide(make_input(discount=11)).outcome == "require_approval"
    assert engine.decide(make_input(discount=11), pinned_bundle=old).outcome == "deny"
