"""The loopback LLM server and the fake keys the real clients send to it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from autopilot.runtime.devstack.llm_server import LlmServer, llm_server

OPENAI_KEY = "sk-test-0penai-secret-7f3a"
ANTHROPIC_KEY = "sk-ant-test-secret-91c2"


@pytest.fixture
def keys(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", OPENAI_KEY)
    monkeypatch.setenv("ANTHROPIC_API_KEY", ANTHROPIC_KEY)


@pytest.fixture
def server(keys: None) -> Iterator[LlmServer]:
    with llm_server() as s:
        yield s
