"""A third-party tool, as a plug-in package would ship it (entry point `autopilot.tools`)."""

from __future__ import annotations

from pydantic import BaseModel

from autopilot.tools.registry import ToolContext, tool


class Greeting(BaseModel):
    name: str


class Greeted(BaseModel):
    text: str
    pid_namespace_init: bool


@tool(scopes=["greet:send"], effect="read", kind="read")
def plugin_greet(args: Greeting, ctx: ToolContext) -> Greeted:
    """Greet someone (from inside the sandbox: its own PID namespace)."""
    import os

    return Greeted(text=f"hello {args.name}", pid_namespace_init=os.getppid() in (0, 1))
