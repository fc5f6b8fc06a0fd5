"""One `chat()` over the official `openai` and `anthropic` clients, normalised to a
ChatResult. The SDKs' own retries are off: a failure surfaces at once as a typed error
(retryable or not) and the Temporal activity owns retries and back-off, so every retry
is visible in the workflow's history and honours the provider's Retry-After."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from typing import Any

import anthropic
import openai

from autopilot.runtime.llm import guard
from autopilot.runtime.llm.config import LlmConfig, cost
from autopilot.runtime.llm.errors import (
    LlmConfigError,
    LlmError,
    LlmMalformed,
    LlmRejected,
    LlmRetryable,
)
from autopilot.runtime.llm.messages import ChatResult, Message, ToolCall, ToolDef, Usage

log = logging.getLogger(__name__)
# Statuses worth another try besides 429 and 5xx: request timeout, conflict (both SDKs agree).
_RETRY_STATUSES = {408, 409, 429}


def chat(
    config: LlmConfig, messages: Sequence[Message], tools: Sequence[ToolDef] | None = None
) -> ChatResult:
    """One round trip to the configured model."""
    if config.provider == "offline":
        raise LlmConfigError(
            "provider offline makes no model calls (the deterministic planner plans)"
        )
    if not config.model:
        raise LlmConfigError("no model is set (llm_model / planner.model / --model)")
    guard.check(config.endpoint)
    key = config.api_key()
    started = time.monotonic()
    try:
        if config.provider == "anthropic":
            result = _anthropic(config, key.get_secret_value(), messages, tools or [])
        else:
            result = _openai(config, key.get_secret_value(), messages, tools or [])
    except (openai.APIError, anthropic.APIError) as err:
        raise _convert(err) from err
    except ValueError as err:  # a 200 whose body is not JSON, or not the provider's shape
        raise LlmMalformed(
            f"the provider's reply is not a chat reply: {type(err).__name__}"
        ) from err
    result.latency_ms = round((time.monotonic() - started) * 1000, 1)
    result.cost = cost(config, result.usage.input_tokens, result.usage.output_tokens)
    result.provider = config.provider
    log.info(
        "llm call",
        extra={
            "provider": config.provider,
            "model": result.model,
            "input_tokens": result.usage.input_tokens,
            "output_tokens": result.usage.output_tokens,
            "tool_calls": [c.name for c in result.tool_calls],
            "latency_ms": result.latency_ms,
        },
    )
    return result


def _convert(err: openai.APIError | anthropic.APIError) -> LlmError:
    if isinstance(err, (openai.APIResponseValidationError, anthropic.APIResponseValidationError)):
        return LlmMalformed(f"the provider's reply is not a chat reply: {err.message}")
    if isinstance(err, (openai.APIConnectionError, anthropic.APIConnectionError)):
        # Timeouts are connection errors in both SDKs: the endpoint may come back.
        return LlmRetryable(f"endpoint unreachable or timed out: {type(err).__name__}")
    if isinstance(err, (openai.APIStatusError, anthropic.APIStatusError)):
        status = err.status_code
        if status in _RETRY_STATUSES or status >= 500:
            return LlmRetryable(
                f"provider answered {status}", status=status, retry_after_s=_retry_after(err)
            )
        return LlmRejected(f"provider refused the request ({status})", status=status)
    return LlmMalformed(f"the provider's reply could not be read: {type(err).__name__}")


def _retry_after(err: openai.APIStatusError | anthropic.APIStatusError) -> float | None:
    value = err.response.headers.get("retry-after")
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None  # an HTTP date: the activity's own back-off applies


def _arguments(raw: str | None) -> dict[str, Any]:
    try:
        args = json.loads(raw or "{}")
    except json.JSONDecodeError:
        raise LlmMalformed("a tool call's arguments are not JSON") from None
    if not isinstance(args, dict):
        raise LlmMalformed("a tool call's arguments are not a JSON object")
    return args  # type: ignore[return-value]


# OpenAI Chat Completions (and every OpenAI-compatible server: vLLM, Ollama, Azure)


def _openai_message(m: Message) -> dict[str, Any]:
    if m.role == "tool":
        return {"role": "tool", "tool_call_id": m.tool_call_id or "", "content": m.content}
    out: dict[str, Any] = {"role": m.role, "content": m.content}
    if m.tool_calls:
        out["tool_calls"] = [
            {
                "id": c.id,
                "type": "function",
                "function": {"name": c.name, "arguments": json.dumps(c.arguments)},
            }
            for c in m.tool_calls
        ]
    return out


def _openai(
    config: LlmConfig, key: str, messages: Sequence[Message], tools: Sequence[ToolDef]
) -> ChatResult:
    client = openai.OpenAI(
        api_key=key, base_url=config.endpoint, timeout=config.timeout_s, max_retries=0
    )
    kwargs: dict[str, Any] = {}
    if tools:
        kwargs["tools"] = [
            {
                "type": "function",
                "function": {
                    "name": t.name,
                    "description": t.description,
                    "parameters": t.parameters,
                },
            }
            for t in tools
        ]
    with client:
        resp = client.chat.completions.create(
            model=config.model,
            messages=[_openai_message(m) for m in messages],  # type: ignore[misc]
            temperature=config.temperature,
            max_tokens=config.max_tokens,
            **kwargs,
        )
    if not getattr(resp, "choices", None):
        raise LlmMalformed("the reply has no choices")
    msg = resp.choices[0].message
    calls = [
        ToolCall(id=c.id, name=c.function.name, arguments=_arguments(c.function.arguments))
        for c in (msg.tool_calls or [])
        if c.type == "function"
    ]
    usage = Usage(
        input_tokens=resp.usage.prompt_tokens if resp.usage else 0,
        output_tokens=resp.usage.completion_tokens if resp.usage else 0,
    )
    return ChatResult(text=msg.content or "", tool_calls=calls, usage=usage, model=resp.model)


# Anthropic Messages


def _anthropic_message(m: Message) -> dict[str, Any]:
    if m.role == "tool":
        block = {"type": "tool_result", "tool_use_id": m.tool_call_id or "", "content": m.content}
        return {"role": "user", "content": [block]}
    if m.tool_calls:
        blocks: list[dict[str, Any]] = [{"type": "text", "text": m.content}] if m.content else []
        blocks += [
            {"type": "tool_use", "id": c.id, "name": c.name, "input": c.arguments}
            for c in m.tool_calls
        ]
        return {"role": m.role, "content": blocks}
    return {"role": m.role, "content": m.content}


def _anthropic(
    config: LlmConfig, key: str, messages: Sequence[Message], tools: Sequence[ToolDef]
) -> ChatResult:
    client = anthropic.Anthropic(
        api_key=key, base_url=config.endpoint, timeout=config.timeout_s, max_retries=0
    )
    system = "\n\n".join(m.content for m in messages if m.role == "system")
    kwargs: dict[str, Any] = {"system": system} if system else {}
    if tools:
        kwargs["tools"] = [
            {"name": t.name, "description": t.description, "input_schema": t.parameters}
            for t in tools
        ]
    with client:
        resp = client.messages.create(
            model=config.model,
            messages=[_anthropic_message(m) for m in messages if m.role != "system"],  # type: ignore[misc]
            # In the body, not as an argument: newer SDKs dropped the parameter, the API keeps it.
            extra_body={"temperature": config.temperature},
            max_tokens=config.max_tokens,
            **kwargs,
        )
    text, calls = [], []
    for block in resp.content or []:
        if block.type == "text":
            text.append(block.text)
        elif block.type == "tool_use":
            if not isinstance(block.input, dict):
                raise LlmMalformed("a tool_use block's input is not a JSON object")
            calls.append(ToolCall(id=block.id, name=block.name, arguments=dict(block.input)))  # type: ignore[arg-type]
    usage = Usage(input_tokens=resp.usage.input_tokens, output_tokens=resp.usage.output_tokens)
    return ChatResult(text="".join(text), tool_calls=calls, usage=usage, model=resp.model)
