"""MCP both ways.

Import: an external MCP server's tools join the registry under scopes the importer
declares; each call starts the server confined by the sandbox (bubblewrap, rlimits,
no network unless hosts are declared) and speaks MCP to it over stdio.

Serve: `autopilot mcp serve` exposes the registry over stdio to an MCP client whose
token (AUTOPILOT_MCP_TOKEN) carries its scopes: it sees and calls only tools within
them; write and external tools answer with their dry run (effects run through an
agent and the policy gate)."""

from __future__ import annotations

import json
import os
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Any, cast

import anyio
import jsonschema
from pydantic import BaseModel, ConfigDict
from sqlmodel import Session, select

from autopilot.runtime.store.mcp import McpImport
from autopilot.tools.registry import (
    Effect,
    Registry,
    ToolArgsInvalid,
    ToolContext,
    ToolDef,
    ToolError,
)
from autopilot.tools.sandbox import SandboxPolicy, ToolTimeout, drop_cgroup, spawn_confined


class McpArgs(BaseModel):
    """Arguments of an imported tool: checked against the server's JSON schema."""

    model_config = ConfigDict(extra="allow")


class McpResult(BaseModel):
    model_config = ConfigDict(extra="allow")

    content: list[dict[str, Any]] = []
    structured: dict[str, Any] | None = None


async def _session_call(
    argv: list[str],
    policy: SandboxPolicy,
    read_only: list[str],
    method: str,
    name: str = "",
    arguments: dict[str, Any] | None = None,
) -> Any:
    from mcp import ClientSession, StdioServerParameters  # noqa: PLC0415 - 0.7 s to import; only MCP calls need it
    from mcp.client.stdio import stdio_client  # noqa: PLC0415 - 0.7 s to import; only MCP calls need it

    confined, cgroup = spawn_confined(argv, policy, read_only=read_only)
    raw = json.dumps(
        {k: v for k, v in asdict(policy).items() if k != "env"} | {"hosts": list(policy.hosts)}
    )
    launcher = [
        sys.executable,
        "-I",
        "-m",
        "autopilot.tools.launch",
        raw,
        str(cgroup or ""),
        "--",
        *confined,
    ]
    params = StdioServerParameters(
        command=launcher[0], args=launcher[1:], env={"PATH": "/usr/bin:/bin"}
    )
    try:
        with anyio.fail_after(policy.timeout_s):
            async with (
                stdio_client(params) as streams,
                ClientSession(streams[0], streams[1]) as session,
            ):
                await session.initialize()
                if method == "list":
                    return (await session.list_tools()).tools
                return await session.call_tool(name, arguments or {})
    except TimeoutError:
        raise ToolTimeout(
            f"MCP server {argv[0]} did not answer within {policy.timeout_s:g} s"
        ) from None
    finally:
        drop_cgroup(cgroup)


def _read_only(argv: list[str]) -> list[str]:
    """The server's own files: any argument that is an existing path (its folder)."""
    out = []
    for a in argv:
        p = Path(a)
        if p.is_absolute() and p.exists():
            out.append(str(p if p.is_dir() else p.parent))
    return out


def list_remote_tools(argv: list[str], policy: SandboxPolicy | None = None) -> list[dict[str, Any]]:
    policy = policy or SandboxPolicy()
    tools = anyio.run(_session_call, argv, policy, _read_only(argv), "list")
    return [
        {"name": t.name, "description": t.description or "", "input_schema": dict(t.input_schema)}
        for t in tools
    ]


def register_imported(
    registry: Registry,
    *,
    server: str,
    argv: list[str],
    scopes: list[str],
    tools: list[dict[str, Any]],
    policy: SandboxPolicy | None = None,
    effect: str = "external",
) -> list[str]:
    """Add an MCP server's tools as `<server>.<tool>`, sandboxed, under `scopes`."""
    policy = policy or SandboxPolicy()
    names = []
    for t in tools:
        name = f"{server}.{t['name']}"
        if name in registry.tools:
            continue
        schema = t["input_schema"]

        def fn(
            args: McpArgs, ctx: ToolContext, _remote: str = t["name"], _schema: dict = schema
        ) -> McpResult:
            values = args.model_dump()
            try:
                jsonschema.validate(values, _schema)
            except jsonschema.ValidationError as err:
                raise ToolArgsInvalid(f"{server}.{_remote}: {err.message}") from None
            if ctx.dry_run:
                return McpResult(
                    content=[{"type": "text", "text": f"would call {_remote} on {server}"}],
                    structured={"dry_run": True, "arguments": values},
                )
            result = anyio.run(
                _session_call, argv, policy, _read_only(argv), "call", _remote, values
            )
            if result.is_error:
                raise ToolError(
                    f"{server}.{_remote}: "
                    + " ".join(getattr(c, "text", "") for c in result.content)
                )
            return McpResult(
                content=[c.model_dump(mode="json") for c in result.content],
                structured=result.structured_content,
            )

        registry.register(
            ToolDef(
                name=name,
                fn=fn,
                args_model=McpArgs,
                result_model=McpResult,
                description=t["description"],
                scopes=tuple(scopes),
                effect=cast(Effect, effect),
                cost=0.0,
                kind="task",
                significant=False,  # type: ignore[arg-type]
                irreversible=effect != "read",
                sandbox=None,
                source=f"mcp {server}",
                json_schema=schema,
                confined=True,
            )
        )
        names.append(name)
    return names


def load_imported(registry: Registry, db: Any) -> list[str]:
    """The MCP servers imported into this store, registered at start-up."""
    names: list[str] = []
    with Session(db) as s:
        for row in s.exec(select(McpImport)):
            names += register_imported(
                registry,
                server=row.name,
                argv=row.argv,
                scopes=row.scopes,
                tools=row.tools,
                effect=row.effect,
            )
    return names


# --- serving the registry -------------------------------------------------------------


def serve(registry: Registry, *, scopes: set[str], ctx_factory: Any) -> None:
    import mcp_types as types  # noqa: PLC0415 - 0.7 s to import; only MCP calls need it
    from mcp.server.lowlevel import Server  # noqa: PLC0415 - 0.7 s to import; only MCP calls need it
    from mcp.server.stdio import stdio_server  # noqa: PLC0415 - 0.7 s to import; only MCP calls need it

    def visible() -> list[ToolDef]:
        return [t for t in registry.list() if set(t.scopes) <= scopes]

    async def list_tools(ctx: Any, params: Any) -> Any:
        return types.ListToolsResult(
            tools=[
                types.Tool(name=t.name, description=t.description, input_schema=t.schema())
                for t in visible()
            ]
        )

    async def call_tool(ctx: Any, params: Any) -> Any:
        tool = next((t for t in visible() if t.name == params.name), None)
        if tool is None:
            return types.CallToolResult(
                is_error=True,
                content=[
                    types.TextContent(
                        type="text",
                        text=f"tool.not_granted: '{params.name}' is not within this client's scopes",
                    )
                ],
            )
        dry = tool.effect != "read"
        try:
            out = await anyio.to_thread.run_sync(
                lambda: registry.call(
                    tool.name, dict(params.arguments or {}), ctx_factory(tool.name, dry)
                )
            )
        except ToolError as err:
            return types.CallToolResult(
                is_error=True, content=[types.TextContent(type="text", text=f"{err.code}: {err}")]
            )
        return types.CallToolResult(
            content=[types.TextContent(type="text", text=json.dumps(out, default=str))],
            structured_content={"dry_run": dry, "result": out},
        )

    server = Server("cs-autopilot", on_list_tools=list_tools, on_call_tool=call_tool)

    async def main() -> None:
        async with stdio_server() as (read, write):
            await server.run(read, write, server.create_initialization_options())

    anyio.run(main)
    os._exit(0)
