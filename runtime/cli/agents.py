"""`autopilot agents …`: the authoring workflow. Validate a spec (file:line), list and
show the agents, start a new one from a shipped agent, and preview what an agent would
do for an account now (the playbook's first stretch and the gate's decisions; nothing
is sent and no run starts)."""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer

from autopilot.runtime.cli.output import console, emit_json, err_console, fail, finish
from autopilot.runtime.config import Settings, get_settings

app = typer.Typer(
    no_args_is_help=True, help="Agents: validate, list, show, new (from a template), preview."
)
JsonOpt = Annotated[bool, typer.Option("--json", help="print one JSON object on stdout")]
DirOpt = Annotated[
    Path | None,
    typer.Option(
        "--dir", help="the agents folder (default: AUTOPILOT_AGENTS_DIR or the shipped one)"
    ),
]
TEMPLATES = ("renewal", "adoption", "expansion", "churn_rescue", "compliance")
_NAME = re.compile(r"^[a-z][a-z0-9_]*$")
_NAME_LINE = re.compile(r"^name:[^\n]*$", re.MULTILINE)


def _settings(folder: Path | None) -> Settings:
    settings = get_settings()
    return settings if folder is None else settings.model_copy(update={"agents_dir": folder})


def _shipped() -> Path:
    from importlib import resources

    return Path(str(resources.files("autopilot.agents")))


def _spec_error(err: Any, as_json: bool) -> NoReturn:
    """A SpecError: `path:line: field: problem`, exit 1."""
    if as_json:
        emit_json(
            {
                "ok": False,
                "error": str(err),
                "path": str(err.path),
                "line": err.line,
                "field": err.field,
            }
        )
    else:
        err_console.print(str(err), markup=False)
    finish(1)


def _load(folder: Path | None, as_json: bool) -> tuple[Path, dict[str, Any]]:
    from autopilot.runtime.agents.specs import SpecError, load_specs

    path = _settings(folder).agents_path
    if not path.is_dir():
        fail(f"{path} is not a folder", as_json=as_json)
    try:
        return path, load_specs(path)
    except SpecError as err:
        _spec_error(err, as_json)


def _one(name: str, folder: Path | None, as_json: bool) -> tuple[Path, Any]:
    path, specs = _load(folder, as_json)
    if name not in specs:
        fail(f"no agent '{name}' in {path} (agents: {', '.join(specs)})", as_json=as_json)
    return path, specs[name]


def _summary(spec: Any) -> dict[str, Any]:
    return {
        "name": spec.name,
        "description": spec.description.strip(),
        "trigger": spec.trigger.strip() if spec.trigger else None,
        "schedule": spec.schedule,
        "priority": spec.priority,
        "autonomy": spec.autonomy,
        "tools": spec.tools,
        "goal": spec.goal.model_dump(mode="json"),
    }


def _oneline(text: str) -> str:
    return " ".join(text.split())


# --- validate --------------------------------------------------------------------------


@app.command("validate")
def validate(
    path: Annotated[
        Path | None,
        typer.Argument(help="a spec file or an agents folder (default: the configured folder)"),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Load the agents folder (or one file) as the worker does.

    A problem prints `path:line: field: problem` and exits 1."""
    from autopilot.runtime.agents.specs import (
        SpecError,
        check_tightens,
        load_spec,
        load_specs,
        spec_hash,
    )
    from autopilot.runtime.policy.engine import PolicyLoadError
    from autopilot.runtime.policy.limits import read_limits
    from autopilot.runtime.services import make_policy_engine

    target = path or get_settings().agents_path
    if not target.exists():
        fail(f"{target} does not exist", as_json=as_json)
    try:
        if target.is_dir():
            specs = load_specs(target)
            files = sorted(target.glob("*.yaml"))  # load_specs reads them in this order
        else:
            spec = load_spec(target)
            specs, files = {spec.name: spec}, [target]
    except SpecError as err:
        _spec_error(err, as_json)
    except OSError as err:
        fail(str(err), as_json=as_json)
    try:  # the agents' own limits against the policy in force
        limits = read_limits(make_policy_engine(get_settings()))
        for f, s in zip(files, specs.values(), strict=True):
            check_tightens(f, s, limits)
    except SpecError as err:
        _spec_error(err, as_json)
    except PolicyLoadError as err:
        fail(f"the policy's limits cannot be read: {err}", as_json=as_json)
    agents = [
        {"name": s.name, "path": str(f), "spec_hash": spec_hash(s)}
        for f, s in zip(files, specs.values(), strict=True)
    ]
    if as_json:
        emit_json({"ok": True, "agents": agents})
        finish(0)
    for a in agents:
        console.print(f"ok  {a['name']:<20} {a['path']}", markup=False)
    console.print(f"{len(agents)} agent(s) valid")
    finish(0)


# --- list and show ---------------------------------------------------------------------


@app.command("list")
def list_agents(folder: DirOpt = None, as_json: JsonOpt = False) -> None:
    """Each agent: what starts it, its priority and autonomy, its tools and its goal."""
    _, specs = _load(folder, as_json)
    agents = [_summary(s) for s in specs.values()]
    if as_json:
        emit_json({"ok": True, "agents": agents})
        finish(0)
    for a in agents:
        starts = " | ".join(
            x
            for x in (
                f"schedule {a['schedule']}" if a["schedule"] else "",
                f"on {_oneline(a['trigger'])}" if a["trigger"] else "",
            )
            if x
        )
        console.print(
            f"[bold]{a['name']}[/bold]  priority {a['priority']}  {a['autonomy']}  "
            f"tools {', '.join(a['tools'])}"
        )
        console.print(f"  {_oneline(a['description'])}", markup=False)
        console.print(f"  goal: {a['goal']['description']} ({a['goal']['metric']})", markup=False)
        console.print(f"  starts: {starts}", markup=False)
    finish(0)


def _step_line(i: int, step: Any) -> str:
    from autopilot.runtime.contracts.agent_spec import WaitStep

    if isinstance(step, WaitStep):
        return f"{i + 1}. wait {step.wait}"
    parts = [f"{i + 1}. {step.id}: {' | '.join(step.do)}"]
    if step.when:
        parts.append(f"when {_oneline(step.when)}")
    if step.to:
        parts.append(f"to {', '.join(step.to)}")
    if step.templates:
        parts.append("templates " + ", ".join(f"{a}={t}" for a, t in step.templates.items()))
    return "  ".join(parts)


@app.command("show")
def show(name: str, folder: DirOpt = None, as_json: JsonOpt = False) -> None:
    """An agent's spec: its playbook steps and its templates."""
    from autopilot.runtime.agents.specs import spec_hash

    path, spec = _one(name, folder, as_json)
    body = spec.model_dump(mode="json", exclude={"template_sources"})
    templates = dict(spec.template_sources)
    if as_json:
        emit_json(
            {
                "ok": True,
                "path": str(path / f"{name}.yaml"),
                "spec_hash": spec_hash(spec),
                "agent": body,
                "templates": templates,
            }
        )
        finish(0)
    s = _summary(spec)
    console.print(f"[bold]{spec.name}[/bold]  priority {spec.priority}  {spec.autonomy}")
    console.print(_oneline(s["description"]), markup=False)
    console.print(
        f"goal: {spec.goal.description} ({spec.goal.metric} ≥ {spec.goal.target})", markup=False
    )
    if spec.schedule:
        console.print(f"schedule: {spec.schedule}", markup=False)
    if spec.trigger:
        console.print(f"trigger: {_oneline(spec.trigger)}", markup=False)
    console.print(f"tools: {', '.join(spec.tools)}  scopes: {', '.join(spec.scopes)}")
    limits = spec.limits.model_dump(mode="json")
    console.print("limits: " + ", ".join(f"{k}={v}" for k, v in limits.items()), markup=False)
    console.print("playbook:")
    for i, step in enumerate(spec.playbook):
        console.print(f"  {_step_line(i, step)}", markup=False)
        for key, value in getattr(step, "args", {}).items():
            console.print(f"       {key}: {value}", markup=False)
    for tname, source in templates.items():
        console.print(f"template {name}/{tname}.j2:", style="bold")
        console.print("    " + source.rstrip().replace("\n", "\n    "), markup=False)
    finish(0)


# --- new -------------------------------------------------------------------------------


@app.command("new")
def new(
    name: str,
    template: Annotated[str, typer.Option("--template", help=" | ".join(TEMPLATES))],
    folder: DirOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Start an agent from a shipped one (never over an existing file).

    Copies <template>.yaml and its template folder to NAME.yaml and NAME/ in the
    agents folder, renamed; the copy validates."""
    from autopilot.runtime.agents.schema import SCHEMA_FILE, write_schema
    from autopilot.runtime.agents.specs import SpecError, load_spec

    if not _NAME.match(name):
        fail(f"'{name}' is not an agent name (a-z, 0-9 and _, a letter first)", as_json=as_json)
    source = _shipped()
    if template not in TEMPLATES or not (source / f"{template}.yaml").is_file():
        fail(f"no template '{template}' (one of: {', '.join(TEMPLATES)})", as_json=as_json)
    target = _settings(folder).agents_path
    spec_file, template_dir = target / f"{name}.yaml", target / name
    for existing in (spec_file, template_dir):
        if existing.exists():
            fail(f"{existing} exists: not overwritten", as_json=as_json)
    text, renamed = _NAME_LINE.subn(f"name: {name}", (source / f"{template}.yaml").read_text(), 1)
    if not renamed:
        fail(f"{source / f'{template}.yaml'} has no `name:` line", as_json=as_json)
    target.mkdir(parents=True, exist_ok=True)
    if (source / template).is_dir():
        shutil.copytree(
            source / template, template_dir, ignore=shutil.ignore_patterns("__pycache__")
        )
    else:
        template_dir.mkdir()
    spec_file.write_text(text)
    schema = target / SCHEMA_FILE
    wrote_schema = not schema.exists()
    if wrote_schema:  # the YAML's first line points editors at it
        write_schema(schema)
    try:
        load_spec(spec_file)
    except SpecError as err:  # a shipped agent that does not validate: leave nothing behind
        spec_file.unlink()
        shutil.rmtree(template_dir)
        if wrote_schema:
            schema.unlink()
        _spec_error(err, as_json)
    files = [spec_file, *sorted(p for p in template_dir.rglob("*") if p.is_file())]
    if as_json:
        emit_json(
            {
                "ok": True,
                "name": name,
                "template": template,
                "path": str(spec_file),
                "files": [str(f) for f in files],
                "schema": str(schema) if wrote_schema else None,
            }
        )
        finish(0)
    for f in files:
        console.print(f"created {f}", markup=False)
    console.print(
        f"next: edit {spec_file.name} (description, trigger/schedule, playbook) and "
        f"{name}/*.j2, then `autopilot agents validate` and "
        f"`autopilot agents preview {name} --account ID`",
        markup=False,
    )
    finish(0)


# --- preview ---------------------------------------------------------------------------


def _print_preview(out: dict[str, Any]) -> None:
    acc = out["account"]
    console.print(
        f"[bold]{out['agent']}[/bold] for {acc['id']} ({acc['name']}, {acc['segment']}, "
        f"health {acc['health']}, renewal probability {acc['renewal_probability']}) "
        f"at {out['at'][:16]}"
    )
    if out["exit"]:
        console.print(f"the run would stop at once: {out['exit']}", markup=False)
    by_step: dict[str, list[dict[str, Any]]] = {}
    for a in out["actions"]:
        by_step.setdefault(a["step"], []).append(a)
    for note in out["notes"]:
        line = f"  {note['step']}: {note['outcome']}"
        if note["chosen"]:
            line += f" {' + '.join(note['chosen'])}"
        if note["detail"]:
            line += f" ({note['detail']})"
        console.print(line, markup=False)
        for a in by_step.pop(note["step"], []) if note["outcome"] == "proposed" else []:
            d = a["decision"]
            verdict = {
                "allow": "ALLOW",
                "require_approval": f"REQUIRES APPROVAL by {', '.join(d['roles'])}",
                "deny": "DENY " + ", ".join(v["code"] for v in d["deny"]),
            }[d["outcome"]]
            console.print(f"    {a['tool']}  cost {a['cost']:g}  → {verdict}", markup=False)
            for key, value in a["args"].items():
                shown = str(value).replace("\n", "\n        ")
                console.print(f"      {key}: {shown}", markup=False)
            console.print(f"      reason: {a['reason']}", markup=False)
    if out["next"]["wait_s"]:
        days = out["next"]["wait_s"] / 86400
        console.print(f"then the run waits {days:g} day(s) and looks again", markup=False)
    console.print("preview only: nothing was sent and no run started")


@app.command("preview")
def preview(
    name: str,
    account: Annotated[str, typer.Option("--account", help="the account id")],
    event: Annotated[
        str, typer.Option("--event", help="the event type the run would start on")
    ] = "preview",
    folder: DirOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """What the agent would do for the account now; sends nothing, starts no run.

    The playbook's first stretch: each step's outcome, each action's tool, rendered
    arguments, cost and the policy's decision (logged, nothing reserved)."""
    from autopilot.runtime.agents.preview import NotFound
    from autopilot.runtime.agents.preview import preview as plan_preview
    from autopilot.runtime.agents.specs import SpecError

    try:
        out = plan_preview(_settings(folder), name, account, event)
    except SpecError as err:
        _spec_error(err, as_json)
    except NotFound as err:
        fail(str(err), as_json=as_json)
    if as_json:
        emit_json(out)
    else:
        _print_preview(out)
    finish(0)
