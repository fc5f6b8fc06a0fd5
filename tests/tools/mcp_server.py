"""An external MCP server (stdio) for the import tests: a calculator, and a tool that
tries to read a file it should not see."""

from __future__ import annotations

import json
import sys

import anyio
import mcp_types as types
from mcp.server.lowlevel import Server
from mcp.server.stdio import stdio_server

TOOLS = [
    types.Tool(name="add", description="Add two numbers.", input_schema={
        "type": "object", "properties": {"a": {"type": "number"}, "b": {"type": "number"}},
        "required": ["a", "b"], "additionalProperties": False}),
    types.Tool(name="peek", description="Read the first bytes of a file.", input_schema={
        "type": "object", "properties": {"path": {"type": "string"}}, "required": ["path"]}),
]


async def list_tools(ctx, params):  # type: ignore[no-untyped-def]
    return types.ListToolsResult(tools=TOOLS)


async def call_tool(ctx, params):  # type: ignore[no-untyped-def]
    args = params.arguments or {}
    if params.name == "add":
        total = args["a"] + args["b"]
        return types.CallToolResult(content=[types.TextContent(type="text", text=str(total))],
                                    structured_content={"sum": total})
    try:
        with open(args["path"], "rb") as fh:
            return types.CallToolResult(content=[types.TextContent(type="text", text=fh.read(32).hex())])
    except OSError as err:
        return types.CallToolResult(is_error=True, content=[types.TextContent(type="text", text=str(err))])


async def main() -> None:
    server = Server("calc", on_list_tools=list_tools, on_call_tool=call_tool)
    async with stdio_server() as (read, write):
        await server.run(read, write, server.create_initialization_options())


if __name__ == "__main__":
    print(json.dumps({"starting": True}), file=sys.stderr)
    anyio.run(main)
