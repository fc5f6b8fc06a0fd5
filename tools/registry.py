"""The tool registry: a typed function + a decorator that records how it may be used.

The decorator returns the function unchanged, so tests call tools directly; the
JSON schema comes from the pydantic argument model."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar, get_type_hints

from pydantic import BaseModel

Effect = Literal["read", "write", "external"]
F = TypeVar("F", bound=Callable[..., BaseModel])


class ToolError(Exception):
    """A tool failed in a way a retry will not fix."""

    code = "tool.failed"


class ToolNotGranted(ToolError):
    code = "tool.not_granted"


class ToolArgsInvalid(ToolError):
    code = "tool.args_invalid"


class ToolOutcomeUnknown(ToolError):
    """A previous attempt started the side effect and never recorded its end: we do not
    repeat it (at most once), a human has to look."""

    code = "tool.outcome_unknown"


@dataclass(frozen=True)
class SmtpConfig:
    host: str
    port: int
    mail_from: str
    username: str = ""
    password: str = ""
    starttls: bool = False


@dataclass(frozen=True)
class ToolContext:
    idempotency_key: str
    dry_run: bool
    smtp: SmtpConfig | None = None
    db: Any = None  # the store's engine, for read tools over account data


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
    significant: bool  # a significant automated decision (price, offer, downgrade): ADMT rules apply

    def schema(self) -> dict[str, Any]:
        return self.args_model.model_json_schema()


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

    def call(self, name: str, args: dict[str, Any], ctx: ToolContext) -> dict[str, Any]:
        tool_def = self.get(name)
        try:
            parsed = tool_def.args_model.model_validate(args)
        except ValueError as err:
            raise ToolArgsInvalid(f"{name}: {err}") from err
        return tool_def.fn(parsed, ctx).model_dump(mode="json")


registry = Registry()


def tool(*, scopes: list[str], effect: Effect, kind: str, cost: float = 0.0, significant: bool = False,
         name: str | None = None) -> Callable[[F], F]:
    def decorate(fn: F) -> F:
        hints = get_type_hints(fn)
        params = list(inspect.signature(fn).parameters)
        registry.register(
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
            )
        )
        return fn

    return decorate
