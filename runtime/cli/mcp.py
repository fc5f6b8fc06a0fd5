"""`autopilot mcp …`: import an external MCP server's tools; serve ours to MCP clients."""

from __future__ import annotations

import os
import secrets
from datetime import UTC, datetime
from typing import Annotated

import typer
from sqlmodel import Session

from autopilot.runtime.cli.output import console, emit_json, fail, finish
from autopilot.runtime.config import get_settings

app = typer.Typer(no_args_is_help=True, help="MCP: import servers' tools, serve ours.")
JsonOpt = Annotated[bool, typer.Option("--json", help="print one JSON object on stdout")]
ScopeOpt = Annotated[list[str], typer.Option("--scope", help="a scope (repeat)")]


def _db():  # type: ignore[no-untyped-def]
    from autopilot.runtime.store.db import make_engine

    return make_engine(get_settings().db_url)


@app.command("import", context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def import_server(
    ctx: typer.Context,
    name: str,
    scope: ScopeOpt,
    effect: Annotated[str, typer.Option(help="read, write or external")] = "external",
    as_json: JsonOpt = False,
) -> None:
    """Import the tools of the MCP server started by the command after `--`; they join
    the registry as NAME.<tool> under the given scopes and always run confined."""
    from autopilot.runtime.store.mcp import McpImport
    from autopilot.tools.mcp_bridge import list_remote_tools
    from autopilot.tools.registry import ToolError

    argv = list(ctx.args)
    if not argv or not scope or effect not in ("read", "write", "external"):
        fail(
            "usage: autopilot mcp import NAME --scope S [--effect read|write|external] -- COMMAND [ARGS…]",
            as_json=as_json,
        )
    try:
        tools = list_remote_tools(argv)
    except (ToolError, OSError, Exception) as err:  # noqa: BLE001 - any failure to reach the server
        fail(f"could not list the tools of `{' '.join(argv)}`: {err}", as_json=as_json)
    db = _db()
    with Session(db) as s:
        s.merge(
            McpImport(
                name=name,
                argv=argv,
                scopes=list(scope),
                effect=effect,
                tools=tools,
                imported_at=datetime.now(UTC),
            )
        )
        s.commit()
    names = [f"{name}.{t['name']}" for t in tools]
    if as_json:
        emit_json({"ok": True, "server": name, "tools": names, "scopes": list(scope)})
    else:
        console.print(
            f"imported {len(names)} tool(s) from {name}: {', '.join(names)} (scopes {', '.join(scope)})"
        )
    finish(0)


@app.command("client")
def add_client(name: str, scope: ScopeOpt, org: str = "demo", as_json: JsonOpt = False) -> None:
    """A token for an MCP client, limited to the given scopes (shown once)."""
    from autopilot.runtime.auth.users import _hash_secret
    from autopilot.runtime.store.mcp import McpClient

    token = "mcp_" + secrets.token_urlsafe(32)
    with Session(_db()) as s:
        s.add(
            McpClient(
                token_hash=_hash_secret(token),
                name=name,
                org_id=org,
                scopes=list(scope),
                created_at=datetime.now(UTC),
            )
        )
        s.commit()
    if as_json:
        emit_json({"ok": True, "name": name, "token": token, "scopes": list(scope)})
    else:
        console.print(f"token for {name} (scopes {', '.join(scope)}): {token}")
    finish(0)


@app.command("serve")
def serve_cmd() -> None:
    """Serve the registry over MCP (stdio) to the client whose token is in
    AUTOPILOT_MCP_TOKEN: only tools within its scopes; effects answer with a dry run."""
    from autopilot.runtime.auth.users import _hash_secret
    from autopilot.runtime.policy.limits import read_limits
    from autopilot.runtime.services import build_services
    from autopilot.runtime.store.mcp import McpClient
    from autopilot.tools.mcp_bridge import serve
    from autopilot.tools.registry import ToolContext

    token = os.environ.get("AUTOPILOT_MCP_TOKEN", "")
    svc = build_services(get_settings())
    with Session(svc.db) as s:
        client = s.get(McpClient, _hash_secret(token)) if token else None
    if client is None:
        fail(
            "AUTOPILOT_MCP_TOKEN is missing or unknown (autopilot mcp client NAME --scope …)",
            as_json=False,
        )

    def ctx(tool: str, dry_run: bool) -> ToolContext:
        return ToolContext(
            idempotency_key=f"mcp/{client.name}/{tool}/{secrets.token_hex(6)}",
            dry_run=dry_run,
            smtp=svc.smtp,
            db=svc.db,
            settings=svc.settings,
            limits=read_limits(svc.policy),
        )

    serve(svc.tools, scopes=set(client.scopes), ctx_factory=ctx)
