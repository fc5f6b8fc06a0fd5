"""The provider-neutral chat shapes: what callers send (messages, tool definitions) and
the one ChatResult every provider's reply is normalised to. Pydantic models, so they
cross Temporal activity boundaries as they are."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field


class ToolCall(BaseModel):
    id: str = ""
    name: str
    arguments: dict[str, Any] = Field(default_factory=dict)


class Message(BaseModel):
    role: Literal["system", "user", "assistant", "tool"]
    content: str = ""
    tool_calls: list[ToolCall] = Field(default_factory=list)  # assistant turns that called tools
    tool_call_id: str | None = None  # a tool turn: the call it answers


class ToolDef(BaseModel):
    """A tool the model may call: its JSON Schema comes from the tool's pydantic model."""

    name: str
    description: str = ""
    parameters: dict[str, Any] = Field(default_factory=lambda: {"type": "object", "properties": {}})


class Usage(BaseModel):
    input_tokens: int = 0
    output_tokens: int = 0

    @property
    def total(self) -> int:
        return self.input_tokens + self.output_tokens


class ChatResult(BaseModel):
    text: str = ""
    tool_calls: list[ToolCall] = Field(default_factory=list)
    usage: Usage = Field(default_factory=Usage)
    cost: float = 0.0  # USD, from the config's prices
    model: str = ""
    provider: str = ""
    latency_ms: float = 0.0
