"""`autopilot tools …`: the registry's tools, their schemas, and dry runs."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from autopilot.runtime.cli.output import console, emit_json, fail, finish
from autopilot.runtime.config import get_settings

app = typer.Typer(no_args_is_help=True, help="Tools: list, show, dry-run.")
JsonOpt = Annotated[bool, typer.Option("--json", help="print one JSON object on stdout")]


def _registry():  # type: ignore[no-untyped-def]
    from autopilot.runtime.store.db import make_engine
    from autopilot.tools.builtin import registry
    from autopilot.tools.mcp_bridge import load_imported

    registry.load_entry_points()
    load_imported(registry, make_engine(get_settings().db_url))
    return registry


@app.command("list")
def list_tools(as_json: JsonOpt = False) -> None:
    """Every registered tool: scopes, effect, cost, compensation, sandbox."""
    tools = [t.summary() for t in _registry().list()]
    if as_json:
        emit_json({"ok": True, "tools": tools})
        finish(0)
    for t in tools:
        undo = t["compensate"] or ("irreversible" if t["irreversible"] else "-")
        console.print(
            f"{t['name']:<22} {t['effect']:<9} cost {t['cost']:<6g} scopes {','.join(t['scopes']):<28} "
            f"undo {undo:<22} {'sandboxed ' if t['sandboxed'] else ''}{t['source']}"
        )
    finish(0)


@app.command("show")
def show(name: str, as_json: JsonOpt = False) -> None:
    """A tool's description and the JSON schema of its arguments and result."""
    from autopilot.tools.registry import ToolError

    try:
        t = _registry().get(name)
    except ToolError as err:
        fail(str(err), as_json=as_json)
    body = {
        **t.summary(),
        "description": t.description,
        "args_schema": t.schema(),
        "result_schema": t.result_model.model_json_schema(),
    }
    if as_json:
        emit_json({"ok": True, **body})
    else:
        console.print_json(json.dumps(body))
    finish(0)


@app.command("call")
def call(
    name: str,
    args: Annotated[str, typer.Option("--args", help="the arguments as JSON")] = "{}",
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="show what it would do, do nothing")
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Call a tool. Write and external tools only with --dry-run here: their effects
    run through an agent and the policy gate."""
    from autopilot.runtime.policy.limits import read_limits
    from autopilot.runtime.services import make_policy_engine, smtp_config
    from autopilot.runtime.store.db import make_engine
    from autopilot.tools.registry import ToolContext, ToolError

    registry = _registry()
    try:
        t = registry.get(name)
        parsed = json.loads(args)
    except (ToolError, json.JSONDecodeError) as err:
        fail(str(err), as_json=as_json)
    if t.effect != "read" and not dry_run:
        fail(
            f"{name} has {t.effect} effects: use --dry-run (effects run through an agent and the gate)",
            as_json=as_json,
        )
    settings = get_settings()
    ctx = ToolContext(
        idempotency_key=f"cli/{name}",
        dry_run=dry_run,
        smtp=smtp_config(settings),
        db=make_engine(settings.db_url),
        settings=settings,
        limits=read_limits(make_policy_engine(settings)),
    )
    try:
        out = registry.call(name, parsed, ctx)
    except ToolError as err:
        fail(f"{getattr(err, 'code', 'tool.failed')}: {err}", as_json=as_json)
    if as_json:
        emit_json({"ok": True, "tool": name, "dry_run": dry_run, "output": out})
    else:
        console.print_json(json.dumps(out, default=str))
    finish(0)
