"""ToolCall / ToolResult: what the execute step sends to a tool and gets back."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict


class ToolCall(BaseModel):
    model_config = ConfigDict(frozen=True)

    tool: str
    args: dict[str, Any]
    idempotency_key: str
    granted: list[str]
    dry_run: bool = False


class ToolResult(BaseModel):
    tool: str
    idempotency_key: str
    status: Literal["done", "dry_run"]
    output: dict[str, Any]
    replayed: bool = False
