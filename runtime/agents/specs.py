"""Load agents/*.yaml into AgentSpec once; a bad file fails with path, line and field."""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Any

import cel
import yaml
from pydantic import ValidationError

from autopilot.runtime.contracts.account import AccountSnapshot
from autopilot.runtime.contracts.agent_spec import AgentSpec
from autopilot.runtime.contracts.hashing import sha256_hex
from autopilot.tools.builtin import registry


class SpecError(ValueError):
    """A YAML agent spec that cannot be used: `path:line: field: problem`."""

    def __init__(self, path: Path, line: int, field: str, problem: str) -> None:
        self.path, self.line, self.field, self.problem = path, line, field, problem
        super().__init__(f"{path}:{line}: {field}: {problem}")


def _line_of(node: yaml.Node, loc: tuple[int | str, ...]) -> int:
    """1-based line of the YAML node at `loc`, or of its deepest existing parent."""
    for key in loc:
        if isinstance(node, yaml.MappingNode):
            child = next((v for k, v in node.value if k.value == key), None)
        elif isinstance(node, yaml.SequenceNode) and isinstance(key, int) and key < len(node.value):
            child = node.value[key]
        else:
            child = None
        if child is None:
            break
        node = child
    return node.start_mark.line + 1


def load_spec(path: Path) -> AgentSpec:
    text = path.read_text()
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
        _no_duplicate_keys(root)
        data: Any = yaml.safe_load(text)
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark or err.context_mark
        line = mark.line + 1 if mark else 1
        raise SpecError(path, line, "<yaml>", str(err.problem or err)) from None
    if root is None or not isinstance(data, dict):
        raise SpecError(path, 1, "<root>", "an agent spec must be a YAML mapping")
    try:
        spec = AgentSpec.model_validate(data)
    except ValidationError as err:
        errors = err.errors()
        # A typo'd key shows up as "extra" and as "missing": point at the line that exists.
        first = next((e for e in errors if e["type"] != "missing"), errors[0])
        loc = tuple(first["loc"])
        field = ".".join(str(p) for p in loc) or "<root>"
        raise SpecError(path, _line_of(root, loc), field, first["msg"]) from None
    _check_grants(path, root, spec)
    _check_trigger(path, root, spec)
    return spec


def _no_duplicate_keys(node: yaml.Node | None) -> None:
    """YAML keeps the last of two equal keys silently (a second `name:` renames the agent)."""
    if isinstance(node, yaml.MappingNode):
        seen: set[str] = set()
        for key, value in node.value:
            if key.value in seen:
                raise yaml.MarkedYAMLError(
                    problem=f"duplicate key '{key.value}'", problem_mark=key.start_mark
                )
            seen.add(key.value)
            _no_duplicate_keys(value)
    elif isinstance(node, yaml.SequenceNode):
        for item in node.value:
            _no_duplicate_keys(item)


# A snapshot and an event with every field set: a trigger that cannot evaluate on them
# names a field that does not exist, compares across types, or is not a condition.
_SAMPLE_ACCOUNT = AccountSnapshot(
    id="acc",
    name="Sample",
    segment="smb",
    region="eu",
    arr=1000.0,
    seats_purchased=10,
    seats_used=5,
    active_users_30d=5,
    logins_30d=50,
    open_tickets=1,
    p1_open=0,
    nps=7,
    sentiment=0.1,
    payment_failures_90d=0,
    renewal_date=date(2030, 1, 1),
    owner_csm="csm",
    health=50.0,
    churn_risk=0.5,
).as_cel(date(2029, 1, 1))
_SAMPLE_EVENT = {
    "type": "nps",
    "account_id": "acc",
    "occurred_at": "2029-01-01T00:00:00Z",
    "active_users": 1,
    "seats_used": 1,
    "logins": 1,
    "priority": "P1",
    "score": 5,
    "sentiment": 0.0,
    "amount": 1.0,
    "module": "core",
    "seats": 1,
}


def _check_trigger(path: Path, root: Any, spec: AgentSpec) -> None:
    try:
        result = cel.compile(spec.trigger).execute(
            {"account": _SAMPLE_ACCOUNT, "event": _SAMPLE_EVENT}
        )
    except KeyError as err:
        problem = f"no field {err} in `account` or `event`"
    except (TypeError, ValueError) as err:
        problem = f"does not evaluate: {str(err).split('.')[0]}"
    else:
        if isinstance(result, bool):
            return
        problem = f"is a {type(result).__name__}, not a condition (true or false)"
    raise SpecError(path, _line_of(root, ("trigger",)), "trigger", problem)


def _check_grants(path: Path, root: Any, spec: AgentSpec) -> None:
    """Every granted tool exists, and its scopes are among the spec's (least privilege)."""
    for i, name in enumerate(spec.tools):
        if name not in registry.tools:
            raise SpecError(
                path, _line_of(root, ("tools", i)), f"tools.{i}", f"unknown tool '{name}'"
            )
        missing = set(registry.tools[name].scopes) - set(spec.scopes)
        if missing:
            raise SpecError(
                path,
                _line_of(root, ("tools", i)),
                f"tools.{i}",
                f"tool '{name}' needs scope(s) {sorted(missing)} that `scopes` does not grant",
            )


def spec_hash(spec: AgentSpec) -> str:
    return sha256_hex(spec)


def load_specs(folder: Path) -> dict[str, AgentSpec]:
    specs: dict[str, AgentSpec] = {}
    for path in sorted(folder.glob("*.yaml")):
        spec = load_spec(path)
        if spec.name in specs:
            raise SpecError(path, 1, "name", f"agent '{spec.name}' is defined twice")
        specs[spec.name] = spec
    return specs
