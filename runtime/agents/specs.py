"""Load agents/*.yaml into AgentSpec once; a bad file fails with path, line and field."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

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
    return spec


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
