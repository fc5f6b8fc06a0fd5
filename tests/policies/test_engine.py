"""The in-process engines' own failure modes, on each engine: all of them deny."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from autopilot.runtime.policy.engine import (
    BUNDLE_MISMATCH,
    MAX_DECISION_BYTES,
    UNAVAILABLE,
    LocalEngine,
    PolicyLoadError,
    decide_raw,
    parse_decision,
    parse_decision_json,
)
from autopilot.runtime.policy.rego import RegoEngine
from autopilot.runtime.policy.regorus_engine import RegorusEngine
from autopilot.runtime.services import watch_policies
from tests.conftest import REPO, wait_for

BASES = yaml.safe_load((REPO / "policies" / "cases_base.yaml").read_text())

Make = Callable[[Path], LocalEngine]


@pytest.fixture(params=[RegorusEngine, RegoEngine], ids=["regorus", "regopy"])
def make(request: pytest.FixtureRequest) -> Make:
    return request.param


def _write_policy(folder: Path, rego: str) -> Path:
    (folder / "autopilot").mkdir(parents=True)
    (folder / "autopilot" / "policy.rego").write_text(rego)
    return folder


@pytest.mark.parametrize(
    "rego",
    [
        # Two values for one complete rule: an evaluation-time conflict.
        'package autopilot\n\ndecision := {"allow": true}\n\ndecision := {"allow": false} if input.action\n',
        "package autopilot\n\ndecision := 1 if false\n",  # undefined
        'package autopilot\n\ndecision := {"allow": "yes", "require_approval": false}\n',  # not a boolean
        (
            'package autopilot\n\ndecision := {"allow": true, "require_approval": false,'
            ' "deny": [{"code": "x", "msg": "y"}]}\n'
        ),  # contradicts itself
    ],
    ids=["conflict", "undefined", "not-boolean", "contradiction"],
)
def test_broken_policy_results_are_denies(tmp_path: Path, rego: str, make: Make) -> None:
    engine = make(_write_policy(tmp_path, rego))
    assert [v.code for v in decide_raw(engine, BASES["email"]).deny] == [UNAVAILABLE]


def test_policy_that_does_not_compile_names_file_and_line(tmp_path: Path, make: Make) -> None:
    with pytest.raises(PolicyLoadError) as info:
        make(_write_policy(tmp_path, "package autopilot\n\nimport rego.v1\n\ndecision := {{\n"))
    assert "autopilot/policy.rego" in str(info.value) and "line " in str(info.value)


def test_run_pinned_to_an_unknown_bundle_is_denied(make: Make) -> None:
    engine = make(REPO / "policies")
    decision = decide_raw(engine, BASES["email"], pinned_bundle="0" * 64)
    assert [v.code for v in decision.deny] == [BUNDLE_MISMATCH]


async def test_reload_swaps_atomically_keeps_pinned_bundles_and_refuses_bad_edits(
    tmp_path: Path, make: Make
) -> None:
    shutil.copytree(REPO / "policies", tmp_path / "policies")
    folder = tmp_path / "policies"
    engine = make(folder)
    loaded: list[str] = []
    engine.on_load(lambda bundle_hash, _files: loaded.append(bundle_hash))
    old = engine.bundle_hash
    assert engine.reload() == old
    offer = {**BASES["offer"], "action": {**BASES["offer"]["action"], "discount_pct": 11}}
    assert decide_raw(engine, offer).outcome == "deny"
    data = folder / "autopilot" / "discount" / "data.json"
    data.write_text(data.read_text().replace('"cap_pct": 10', '"cap_pct": 12'))
    stop = watch_policies(engine, interval_s=0.05)
    try:
        await wait_for(lambda: engine.bundle_hash != old, what="the watcher to reload")
    finally:
        stop()
    assert engine.reload() != old
    assert loaded == [old, engine.bundle_hash]  # the store hook hears each bundle once
    assert decide_raw(engine, offer).outcome == "require_approval"
    assert decide_raw(engine, offer, pinned_bundle=old).outcome == "deny"
    rego = folder / "autopilot" / "decision.rego"
    rego.write_text(rego.read_text() + "\nthis is not rego\n")
    with pytest.raises(PolicyLoadError):
        engine.reload()
    assert decide_raw(engine, offer).outcome == "require_approval"  # still the last good bundle
    assert len(loaded) == 2


def test_policy_that_loops_past_the_vm_instruction_budget_is_denied(tmp_path: Path) -> None:
    # regorus's VM stops a runaway evaluation (an error there, not an answer): a deny.
    rego = "package autopilot\n\ndecision := {x | some x in numbers.range(1, 100000)}\n"
    engine = RegorusEngine(_write_policy(tmp_path, rego))
    assert [v.code for v in decide_raw(engine, BASES["email"]).deny] == [UNAVAILABLE]


_ALLOW = {"allow": True, "require_approval": True, "deny": []}
_APPROVALS = [
    {"role": "vp", "reason": "ARR", "sla_hours": 72},
    {"role": "csm", "reason": "ARR", "sla_hours": 24.5},
]
_DENY = {"allow": False, "require_approval": False}


@pytest.mark.parametrize(
    "raw",
    [
        {**_ALLOW, "approval": _APPROVALS, "obligations": [{"type": "b"}, {"type": "a"}]},
        {**_DENY, "deny": [{"code": "z", "msg": "z"}, {"code": "a", "msg": "a"}]},
        {**_DENY, "deny": [{"code": "a", "msg": "société"}]},  # non-ASCII
        {**_ALLOW, "bundle_hash": 1},  # the engine's own hashes never count
        {**_ALLOW, "allow": "yes"},  # not a boolean
        {**_ALLOW, "deny": [{"code": "a", "msg": "a"}]},  # contradicts itself
        {"allow": True},  # incomplete
        {
            **_DENY,
            "deny": [{"code": "a", "msg": "x" * (MAX_DECISION_BYTES - 300)}],
        },  # near the bound
        {**_DENY, "deny": [{"code": "a", "msg": "x" * MAX_DECISION_BYTES}]},  # over it
        {**_DENY, "deny": [{"code": "a", "msg": "é" * (MAX_DECISION_BYTES // 4)}]},  # over, escaped
        [],
        "<undefined>",
    ],
    ids=lambda raw: json.dumps(raw)[:40],
)
def test_a_decision_read_as_json_text_is_judged_as_the_parsed_one(raw: Any) -> None:
    hashes = {"bundle_hash": "b" * 64, "input_hash": "i" * 64}
    text = json.dumps(raw, indent=2, ensure_ascii=False)  # as regorus's VM writes it
    assert parse_decision_json(text, **hashes) == parse_decision(raw, **hashes)
