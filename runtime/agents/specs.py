"""Load agents/*.yaml into AgentSpec once; a bad file fails with path, line and field."""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Any

import cel
import yaml
from jinja2 import TemplateSyntaxError
from jinja2.sandbox import ImmutableSandboxedEnvironment
from pydantic import ValidationError

from autopilot.runtime.agents import playbook
from autopilot.runtime.agents.playbook import RunFacts
from autopilot.runtime.contracts.account import (
    AccountSnapshot,
    Assessment,
    ContactInfo,
    HealthReason,
)
from autopilot.runtime.contracts.agent_spec import ActionStep, AgentSpec
from autopilot.runtime.contracts.hashing import sha256_hex
from autopilot.runtime.policy.limits import PolicyLimits
from autopilot.tools.builtin import registry


class SpecError(ValueError):
    """A YAML agent spec that cannot be used: `path:line: field: problem`."""

    def __init__(self, path: Path, line: int, field: str, problem: str) -> None:
        self.path, self.line, self.field, self.problem = path, line, field, problem
        super().__init__(f"{path}:{line}: {field}: {problem}")


def _line_of(node: yaml.Node, loc: tuple[int | str, ...]) -> int:
    """1-based line of the YAML key (or item) at `loc`, or of its deepest existing parent."""
    line = node.start_mark.line + 1
    for key in loc:
        if isinstance(node, yaml.MappingNode):
            pair = next(((k, v) for k, v in node.value if k.value == key), None)
            child, at = (pair[1], pair[0].start_mark.line + 1) if pair else (None, line)
        elif isinstance(node, yaml.SequenceNode) and isinstance(key, int) and key < len(node.value):
            child = node.value[key]
            at = child.start_mark.line + 1
        else:
            child = None
        if child is None:
            break
        node, line = child, at
    return line


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
    if "template_sources" in data:
        raise SpecError(
            path,
            _line_of(root, ("template_sources",)),
            "template_sources",
            "set by the loader from the template files beside the YAML",
        )
    name = data.get("name")
    if isinstance(name, str):
        data["template_sources"] = _templates(path.parent / name)
    try:
        spec = AgentSpec.model_validate(data)
    except ValidationError as err:
        errors = err.errors()
        # A typo'd key shows up as "extra" and as "missing": point at the line that exists.
        first = next((e for e in errors if e["type"] != "missing"), errors[0])
        loc = _without_tags(tuple(first["loc"]))
        field = ".".join(str(p) for p in loc) or "<root>"
        raise SpecError(path, _line_of(root, loc), field, first["msg"]) from None
    _check_grants(path, root, spec)
    _check_conditions(path, root, spec)
    _check_steps(path, root, spec)
    return spec


def _without_tags(loc: tuple[int | str, ...]) -> tuple[int | str, ...]:
    """Pydantic names a playbook step's kind (`action`, `wait`) after its index: not a
    key of the YAML."""
    if len(loc) > 2 and loc[0] == "playbook" and loc[2] in ("action", "wait"):
        return loc[:2] + loc[3:]
    return loc


def _templates(folder: Path) -> dict[str, str]:
    """The agent's templates: `<agent>/<name>[.<lang>].j2` beside its YAML."""
    if not folder.is_dir():
        return {}
    return {p.name.removesuffix(".j2"): p.read_text() for p in sorted(folder.glob("*.j2"))}


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
_SAMPLE_DAY = date(2029, 1, 1)
_SAMPLE_SNAPSHOT = AccountSnapshot(
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
    contacts=[
        ContactInfo(id=f"c_{role}", name=f"Sam {role}", email=f"{role}@sample.example", role=role)
        for role in ("champion", "admin", "executive_sponsor", "end_user", "billing")
    ],
)
_SAMPLE_ACCOUNT = playbook.account_cel(_SAMPLE_SNAPSHOT, _SAMPLE_DAY)
_SAMPLE_REASONS = [HealthReason(label="logins per seat", value=0.4, contribution=-12.0)]
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


def _sample_run() -> RunFacts:
    return RunFacts(started=_SAMPLE_DAY, events=["email_reply"], done={"step": "executed"})


def _check_conditions(path: Path, root: Any, spec: AgentSpec) -> None:
    """Every CEL expression evaluates to a condition on a full account, event and run."""
    run = _sample_run().as_cel(_SAMPLE_DAY)
    exprs: list[tuple[tuple[int | str, ...], str, dict[str, Any]]] = []
    if spec.trigger:
        for event in (_SAMPLE_EVENT, {"type": "schedule"}):
            exprs.append((("trigger",), spec.trigger, {"account": _SAMPLE_ACCOUNT, "event": event}))
    if spec.audience.filter:
        exprs.append((("audience", "filter"), spec.audience.filter, {"account": _SAMPLE_ACCOUNT}))
    ctx = {"account": _SAMPLE_ACCOUNT, "event": _SAMPLE_EVENT, "run": run}
    if spec.exit.when:
        exprs.append((("exit", "when"), spec.exit.when, ctx))
    for i, step in enumerate(spec.playbook):
        if isinstance(step, ActionStep) and step.when:
            exprs.append((("playbook", i, "when"), step.when, ctx))
    for loc, expr, variables in exprs:
        if loc == ("trigger",) and variables["event"].get("type") == "schedule":
            # A trigger may name event fields a sweep's event lacks: it is then not due.
            try:
                cel.compile(expr).execute(variables)
            except (KeyError, TypeError, ValueError):
                pass
            continue
        try:
            result = cel.compile(expr).execute(variables)
        except KeyError as err:
            problem = f"no field {err} in `account`, `event` or `run`"
        except (TypeError, ValueError) as err:
            problem = f"does not evaluate: {str(err).split('.')[0]}"
        else:
            if isinstance(result, bool):
                continue
            problem = f"is a {type(result).__name__}, not a condition (true or false)"
        raise SpecError(path, _line_of(root, loc), ".".join(map(str, loc)), problem)


def _check_steps(path: Path, root: Any, spec: AgentSpec) -> None:
    """Every step's options resolve to a granted tool, its templates exist and compile,
    and what it renders for a full sample account is valid input for the tool."""
    for name, source in spec.template_sources.items():
        try:
            ImmutableSandboxedEnvironment().parse(source)
        except TemplateSyntaxError as err:
            raise SpecError(
                path.parent / spec.name / f"{name}.j2", err.lineno, "<template>", err.message or ""
            ) from None
    assessment = Assessment(health=42.0, risk=0.4, reasons=_SAMPLE_REASONS)
    for i, step in enumerate(spec.playbook):
        if not isinstance(step, ActionStep):
            continue
        for j, name in enumerate(step.do):
            loc: tuple[int | str, ...] = (
                ("playbook", i, "do", j) if len(step.do) > 1 else ("playbook", i, "do")
            )
            try:
                option = playbook.resolve(spec, name)
            except KeyError as err:
                raise SpecError(
                    path, _line_of(root, loc), ".".join(map(str, loc)), err.args[0]
                ) from None
            if option.tool not in spec.tools:
                raise SpecError(
                    path,
                    _line_of(root, loc),
                    ".".join(map(str, loc)),
                    f"'{name}' runs tool '{option.tool}', which `tools` does not grant",
                )
            for arg, template in step.templates.items():
                if template not in spec.template_sources:
                    tloc = ("playbook", i, "templates", arg)
                    raise SpecError(
                        path,
                        _line_of(root, tloc),
                        ".".join(map(str, tloc)),
                        f"no template file {spec.name}/{template}.j2 beside the YAML",
                    )
            contact = playbook.pick_contact(_SAMPLE_SNAPSHOT, step.to) if step.to else None
            fields = playbook.merge_fields(
                spec,
                _SAMPLE_SNAPSHOT,
                assessment,
                _sample_run(),
                _SAMPLE_DAY,
                contact=contact,
                option=option,
            )
            try:
                keep = set(registry.get(option.tool).args_model.model_fields)
                # Every language variant renders (a German contact's copy is checked too).
                languages = {n.rpartition(".")[2] for n in spec.template_sources if "." in n}
                for language in sorted(languages):
                    playbook.render_args(spec, step, fields, language, keep)
                args, _ = playbook.render_args(spec, step, fields, "en", keep)
            except playbook.TemplateProblem as err:
                aloc = ("playbook", i)
                raise SpecError(path, _line_of(root, aloc), f"playbook.{i}", str(err)) from None
            try:
                registry.get(option.tool).args_model.model_validate(args)
            except ValidationError as err:
                first = err.errors()[0]
                field = str(first["loc"][0]) if first["loc"] else "<args>"
                aloc = ("playbook", i, "args", field)
                raise SpecError(
                    path,
                    _line_of(root, aloc),
                    ".".join(map(str, aloc)),
                    f"{option.tool} argument '{field}': {first['msg']} (rendered for a sample account)",
                ) from None


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


def check_tightens(path: Path, spec: AgentSpec, limits: PolicyLimits) -> None:
    """An agent's limits only tighten the policy. One set looser than the policy allows
    in any segment could never apply, and tells its reader something false: an error."""
    root = yaml.compose(path.read_text()) if path.is_file() else None
    written = _written_limits(root)
    caps = [d.cap_pct for d in limits.discount.values()]
    if "max_discount_pct" in written and caps and spec.limits.max_discount_pct > max(caps):
        raise SpecError(
            path,
            _line_of(root, ("limits", "max_discount_pct")) if root else 1,
            "limits.max_discount_pct",
            f"{spec.limits.max_discount_pct:g} % is looser than the policy's cap in every "
            f"segment (at most {max(caps):g} %): an agent's limits only tighten",
        )


def _written_limits(root: yaml.Node | None) -> set[str]:
    if not isinstance(root, yaml.MappingNode):
        return set()
    node = next((v for k, v in root.value if k.value == "limits"), None)
    return {k.value for k, _ in node.value} if isinstance(node, yaml.MappingNode) else set()
