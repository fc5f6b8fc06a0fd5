"""The real `openai` and `anthropic` clients against the loopback server: replies and
tool calls normalised to one shape, errors sorted into retryable or not, keys sent but
never logged, and the guard keeping every call on loopback."""

from __future__ import annotations

import logging

import pytest

from autopilot.runtime.devstack.llm_server import LlmServer, Reply
from autopilot.runtime.llm import guard
from autopilot.runtime.llm.client import chat
from autopilot.runtime.llm.config import LlmConfig
from autopilot.runtime.llm.errors import LlmGuardError, LlmMalformed, LlmRejected, LlmRetryable
from autopilot.runtime.llm.messages import Message, ToolDef
from tests.runtime.llm.conftest import ANTHROPIC_KEY, OPENAI_KEY

PROVIDERS = ["openai", "anthropic", "openai_compatible"]
ASK = [Message(role="system", content="You are a CSM."), Message(role="user", content="Plan.")]
EMAIL = ToolDef(
    name="send_email",
    description="Send an email",
    parameters={"type": "object", "properties": {"to": {"type": "string"}}},
)


def config(server: LlmServer, provider: str, **kw: object) -> LlmConfig:
    url = server.anthropic_url if provider == "anthropic" else server.base_url
    model = "claude-sonnet-4-5" if provider == "anthropic" else "gpt-4o-mini"
    return LlmConfig.model_validate({"provider": provider, "model": model, "base_url": url, **kw})


@pytest.mark.parametrize("provider", PROVIDERS)
def test_a_plain_reply_is_normalised_with_usage_and_cost(server: LlmServer, provider: str) -> None:
    server.push(Reply(text="Send the QBR deck.", input_tokens=1000, output_tokens=500))
    result = chat(config(server, provider), ASK)
    assert result.text == "Send the QBR deck."
    assert result.tool_calls == []
    assert (result.usage.input_tokens, result.usage.output_tokens) == (1000, 500)
    p_in, p_out = config(server, provider).prices()
    assert p_in > 0 and result.cost == pytest.approx(p_in + p_out / 2)
    assert result.provider == provider
    sent = server.requests[-1]
    assert sent.path == ("/v1/messages" if provider == "anthropic" else "/v1/chat/completions")
    assert sent.body["model"] == config(server, provider).model


@pytest.mark.parametrize("provider", PROVIDERS)
def test_a_tool_call_is_parsed_into_name_and_argument_dict(
    server: LlmServer, provider: str
) -> None:
    server.push(Reply.tool("send_email", to="ana@acme.example", days=3))
    result = chat(config(server, provider), ASK, [EMAIL])
    assert [(c.name, c.arguments) for c in result.tool_calls] == [
        ("send_email", {"to": "ana@acme.example", "days": 3})
    ]
    # Exactly the granted tools were offered, in the provider's own format.
    tools = server.requests[-1].body["tools"]
    if provider == "anthropic":
        assert tools == [
            {"name": "send_email", "description": "Send an email", "input_schema": EMAIL.parameters}
        ]
        assert server.requests[-1].body["system"] == "You are a CSM."
    else:
        assert [t["function"]["name"] for t in tools] == ["send_email"]
        assert tools[0]["function"]["parameters"] == EMAIL.parameters


@pytest.mark.parametrize("provider", PROVIDERS)
def test_429_is_retryable_with_the_providers_retry_after(server: LlmServer, provider: str) -> None:
    server.push(Reply.error(429, retry_after="7"))
    with pytest.raises(LlmRetryable) as info:
        chat(config(server, provider), ASK)
    assert (info.value.status, info.value.retry_after_s) == (429, 7.0)
    assert len(server.requests) == 1  # the SDK's own retries are off: Temporal retries


@pytest.mark.parametrize("provider", PROVIDERS)
def test_500_is_retryable(server: LlmServer, provider: str) -> None:
    server.push(Reply.error(500))
    with pytest.raises(LlmRetryable) as info:
        chat(config(server, provider), ASK)
    assert info.value.status == 500


@pytest.mark.parametrize("provider", PROVIDERS)
@pytest.mark.parametrize("status", [400, 401, 404])
def test_other_4xx_is_not_retryable(server: LlmServer, provider: str, status: int) -> None:
    server.push(Reply.error(status))
    with pytest.raises(LlmRejected) as info:
        chat(config(server, provider), ASK)
    assert info.value.status == status


@pytest.mark.parametrize("provider", PROVIDERS)
def test_a_malformed_reply_is_its_own_error(server: LlmServer, provider: str) -> None:
    server.push(Reply(malformed=True))
    with pytest.raises(LlmMalformed):
        chat(config(server, provider), ASK)


def test_an_unreachable_endpoint_is_retryable(keys: None) -> None:
    with pytest.raises(LlmRetryable):
        chat(
            LlmConfig(provider="openai", model="m", base_url="http://127.0.0.1:9/v1", timeout_s=5),
            ASK,
        )


@pytest.mark.parametrize("provider", PROVIDERS)
def test_the_key_is_sent_but_never_logged(
    server: LlmServer, provider: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)  # the SDKs' and httpx's debug logs included
    server.push(Reply.tool("send_email", to="x@y.example"), Reply.error(401))
    cfg = config(server, provider)
    chat(cfg, ASK, [EMAIL])
    with pytest.raises(LlmRejected):
        chat(cfg, ASK)
    key = ANTHROPIC_KEY if provider == "anthropic" else OPENAI_KEY
    headers = server.requests[0].headers
    assert key in (headers.get("authorization", "") + headers.get("x-api-key", ""))
    assert caplog.records, "the call logs something"
    logged = "\n".join(r.getMessage() + repr(r.__dict__) for r in caplog.records)
    assert key not in logged
    assert key not in cfg.model_dump_json() and key not in repr(cfg)


@pytest.mark.parametrize(
    ("provider", "base_url"),
    [
        ("openai", None),  # the provider's public default, api.openai.com
        ("anthropic", None),
        ("openai", "https://api.openai.com/v1"),
        ("openai_compatible", "http://10.1.2.3:8000/v1"),
        ("openai_compatible", "http://llm.internal.example/v1"),
        ("openai", "http://127.0.0.1.nip.io/v1"),
    ],
)
def test_the_guard_refuses_every_non_loopback_host(
    server: LlmServer, provider: str, base_url: str | None
) -> None:
    with pytest.raises(LlmGuardError):
        chat(LlmConfig(provider=provider, model="m", base_url=base_url), ASK)  # type: ignore[arg-type]
    assert server.requests == []


def test_the_guard_is_on_in_tests_and_lets_loopback_through(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert guard.loopback_only()
    for url in ("http://127.0.0.1:1/v1", "http://localhost:8000", "http://[::1]:9/v1"):
        guard.check(url)
    monkeypatch.setenv(guard.ENV, "0")
    guard.check("https://api.openai.com/v1")  # off: a deployment's own choice
