"""The tool registry: a typed function + a decorator that records how it may be used.

The decorator returns the function unchanged, so tests call tools directly; the
JSON schema comes from the pydantic argument model."""

from __future__ import annotations

import contextvars
import inspect
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from typing import Any, Literal, TypeVar, get_type_hints

from pydantic import BaseModel

from autopilot.tools.context import SmtpConfig, ToolContext
from autopilot.tools.errors import (
    ToolArgsInvalid,
    ToolError,
    ToolNotGranted,
    ToolOutcomeUnknown,
    ToolUnavailable,
)
from autopilot.tools.sandbox import SandboxPolicy, run_sandboxed

__all__ = [  # the names tool authors import from here
    "Effect",
    "Registry",
    "SmtpConfig",
    "ToolArgsInvalid",
    "ToolContext",
    "ToolDef",
    "ToolError",
    "ToolNotGranted",
    "ToolOutcomeUnknown",
    "ToolUnavailable",
    "registry",
    "tool",
]

log = logging.getLogger(__name__)
Effect = Literal["read", "write", "external"]
ENTRY_POINT_GROUP = "autopilot.tools"
# Set while third-party tools load: they run in the sandbox unless they say how.
_third_party: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "third_party", default=None
)
F = TypeVar("F", bound=Callable[..., BaseModel])


@dataclass(frozen=True)
class ToolDef:
    name: str
    fn: Callable[..., BaseModel]
    args_model: type[BaseModel]
    result_model: type[BaseModel]
    description: str
    scopes: tuple[str, ...]
    effect: Effect
    cost: float
    kind: str  # what the policy sees: email, offer, in_app, meeting, task, ...
    significant: (
        bool  # a significant automated decision (price, offer, downgrade): ADMT rules apply
    )
    compensate: str | None = None  # the tool that undoes this one's effect
    irreversible: bool = (
        False  # an effect nothing can undo (a delivered email): reported, not pretended away
    )
    sandbox: SandboxPolicy | None = None  # run in a separate confined process (tools/SANDBOX.md)
    source: str = "built-in"  # or the entry point / MCP server it came from
    json_schema: dict[str, Any] | None = None  # an imported tool's own argument schema
    confined: bool = False  # runs confined by itself (an imported MCP server under the sandbox)
    # The receiver de-duplicates by the idempotency key (an Idempotency-Key header, a row
    # keyed by it): asking again is safe, so an unknown outcome is reconciled by retrying.
    dedup_by_key: bool = False

    def schema(self) -> dict[str, Any]:
        return self.json_schema or self.args_model.model_json_schema()

    def summary(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "description": self.description.split("\n")[0],
            "scopes": list(self.scopes),
            "effect": self.effect,
            "cost": self.cost,
            "kind": self.kind,
            "compensate": self.compensate,
            "irreversible": self.irreversible,
            "sandboxed": self.sandbox is not None or self.confined,
            "dedup_by_key": self.dedup_by_key,
            "source": self.source,
        }


@dataclass
class Registry:
    tools: dict[str, ToolDef] = field(default_factory=dict)

    def register(self, tool_def: ToolDef) -> None:
        if tool_def.name in self.tools:
            raise ValueError(f"tool '{tool_def.name}' is registered twice")
        self.tools[tool_def.name] = tool_def

    def get(self, name: str) -> ToolDef:
        try:
            return self.tools[name]
        except KeyError:
            raise ToolError(f"unknown tool '{name}'") from None

    def list(self) -> list[ToolDef]:
        return sorted(self.tools.values(), key=lambda t: t.name)

    def granted(self, scopes: list[str] | tuple[str, ...]) -> list[ToolDef]:
        """The tools an agent with these scopes may use (and the only ones its planner sees)."""
        return [t for t in self.list() if set(t.scopes) <= set(scopes)]

    def call(self, name: str, args: dict[str, Any], ctx: ToolContext) -> dict[str, Any]:
        tool_def = self.get(name)
        try:
            parsed = tool_def.args_model.model_validate(args)
        except ValueError as err:
            raise ToolArgsInvalid(f"{name}: {err}") from err
        if tool_def.sandbox is not None:
            payload = {
                "args": parsed.model_dump(mode="json"),
                "idempotency_key": ctx.idempotency_key,
                "dry_run": ctx.dry_run,
            }
            result = run_sandboxed(
                tool_def.fn.__module__, tool_def.fn.__name__, payload, tool_def.sandbox
            )
            return tool_def.result_model.model_validate(result).model_dump(mode="json")
        return tool_def.fn(parsed, ctx).model_dump(mode="json")

    def load_entry_points(self) -> list[str]:
        """Third-party tools: each module in the `autopilot.tools` entry-point group
        registers its tools on import; they run sandboxed unless they declare a policy."""
        loaded = []
        for ep in entry_points(group=ENTRY_POINT_GROUP):
            token = _third_party.set(f"entry point {ep.name} ({ep.value})")
            try:
                ep.load()
                loaded.append(ep.name)
            except Exception as err:  # noqa: BLE001 - one broken plug-in must not stop the worker
                log.error("tool entry point %s failed to load: %s", ep.name, err)
            finally:
                _third_party.reset(token)
        return loaded


registry = Registry()


def tool(
    *,
    scopes: list[str],
    effect: Effect,
    kind: str,
    cost: float = 0.0,
    significant: bool = False,
    name: str | None = None,
    compensate: str | None = None,
    irreversible: bool = False,
    sandbox: SandboxPolicy | bool | None = None,
    dedup_by_key: bool = False,
    into: Registry | None = None,
) -> Callable[[F], F]:
    """Register a typed tool: `fn(args: ArgsModel, ctx: ToolContext) -> ResultModel`.
    A write or external tool names its compensating tool, or says it is irreversible."""

    def decorate(fn: F) -> F:

        hints = get_type_hints(fn)
        params = list(inspect.signature(fn).parameters)
        source = _third_party.get()
        policy = (
            SandboxPolicy()
            if sandbox is True or (sandbox is None and source)
            else (sandbox or None)
        )
        (into or registry).register(
            ToolDef(
                name=name or fn.__name__,
                fn=fn,
                args_model=hints[params[0]],
                result_model=hints["return"],
                description=inspect.getdoc(fn) or "",
                scopes=tuple(scopes),
                effect=effect,
                cost=cost,
                kind=kind,
                significant=significant,
                compensate=compensate,
                irreversible=irreversible,
                sandbox=policy,
                source=source or "built-in",
                dedup_by_key=dedup_by_key,
            )
        )
        return fn

    return decorate
