"""Policy test cases as data (regopy has no test runner): `cases.yaml` beside each
policy, over the named base inputs in `policies/cases_base.yaml`. The same cases
run under pytest (both backends) and `autopilot policy test`."""

from __future__ import annotations

import copy
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict

from autopilot.runtime.contracts.policy import Decision
from autopilot.runtime.policy.engine import PolicyEngine, decide_raw


class Expect(BaseModel):
    model_config = ConfigDict(extra="forbid")

    outcome: str
    deny: list[str] | None = None  # exactly these codes
    includes: list[str] = []  # at least these codes
    roles: list[str] | None = None  # exactly these approval roles
    obligations: list[str] | None = None  # exactly these obligation types (with repeats)
    sla: dict[str, float] = {}  # role -> sla_hours
    require_approval: bool | None = None


class Case(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    base: str | None = None
    input: dict[str, Any] = {}
    raw: bool = False  # evaluate without the schema check, to test the Rego guards
    expect: Expect
    source: str = ""


@dataclass
class CaseResult:
    case: Case
    decision: Decision
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def merge(base: Any, patch: Any) -> Any:
    """Deep merge; a None in the patch removes the key."""
    if not isinstance(base, dict) or not isinstance(patch, dict):
        return copy.deepcopy(patch)
    out = copy.deepcopy(base)
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        elif isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def load_cases(folder: Path) -> list[Case]:
    bases = yaml.safe_load((folder / "cases_base.yaml").read_text())
    cases = []
    for path in sorted(folder.rglob("cases.yaml")):
        for i, raw in enumerate(yaml.safe_load(path.read_text()) or []):
            case = Case.model_validate({**raw, "source": f"{path.relative_to(folder)}#{i + 1}"})
            if case.base is not None and case.base not in bases:
                raise ValueError(f"{case.source}: unknown base '{case.base}'")
            cases.append(case)
    return cases


def case_input(case: Case, bases: dict[str, Any]) -> dict[str, Any]:
    return merge(bases.get(case.base or "", {}), case.input)


def run_case(engine: PolicyEngine, case: Case, bases: dict[str, Any]) -> CaseResult:
    payload = case_input(case, bases)
    decision = engine.evaluate(payload) if case.raw else decide_raw(engine, payload)
    result = CaseResult(case=case, decision=decision)
    exp, codes = case.expect, sorted({v.code for v in decision.deny})
    if decision.outcome != exp.outcome:
        result.problems.append(f"outcome {decision.outcome}, expected {exp.outcome}")
    if exp.deny is not None and codes != sorted(set(exp.deny)):
        result.problems.append(f"deny {codes}, expected {sorted(set(exp.deny))}")
    if missing := set(exp.includes) - set(codes):
        result.problems.append(f"deny lacks {sorted(missing)} (got {codes})")
    if exp.roles is not None and decision.roles != sorted(set(exp.roles)):
        result.problems.append(f"roles {decision.roles}, expected {sorted(set(exp.roles))}")
    if exp.obligations is not None:
        got = Counter(o.get("type") for o in decision.obligations)
        if got != Counter(exp.obligations):
            result.problems.append(
                f"obligations {dict(got)}, expected {dict(Counter(exp.obligations))}"
            )
    for role, hours in exp.sla.items():
        slas = {a.sla_hours for a in decision.approval if a.role == role}
        if slas != {hours}:
            result.problems.append(
                f"sla for {role} {sorted(slas, key=lambda s: (s is None, s or 0))}, expected {hours}"
            )
    if exp.require_approval is not None and decision.require_approval != exp.require_approval:
        result.problems.append(f"require_approval {decision.require_approval}")
    return result


def run_all(engine: PolicyEngine, folder: Path) -> list[CaseResult]:
    bases = yaml.safe_load((folder / "cases_base.yaml").read_text())
    return [run_case(engine, case, bases) for case in load_cases(folder)]
