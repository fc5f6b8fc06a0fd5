"""LlmConfig and the planner settings: resolved from the spec over the settings, keys
read at call time from where the config says (and named when missing), never kept."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import TypeAdapter, ValidationError

from autopilot.runtime.config import Settings
from autopilot.runtime.contracts.agent_spec import LlmPlanner, OfflinePlanner, PlannerSettings
from autopilot.runtime.llm.config import LlmConfig, cost, price_of, resolve
from autopilot.runtime.llm.errors import LlmConfigError

PLANNER: TypeAdapter[OfflinePlanner | LlmPlanner] = TypeAdapter(PlannerSettings)


def test_the_planner_is_offline_by_default_and_llm_when_asked() -> None:
    assert isinstance(PLANNER.validate_python({}), OfflinePlanner)
    llm = PLANNER.validate_python(
        {"kind": "llm", "provider": "anthropic", "model": "claude-sonnet-4"}
    )
    assert isinstance(llm, LlmPlanner) and llm.provider == "anthropic"


@pytest.mark.parametrize(
    ("planner", "field"),
    [
        ({"kind": "gpt"}, ()),
        ({"kind": "llm", "provider": "mistral"}, ("llm", "provider")),
        ({"kind": "llm", "temperature": 3}, ("llm", "temperature")),
        ({"kind": "llm", "max_tokens": 0}, ("llm", "max_tokens")),
        ({"kind": "llm", "api_key": "sk-live"}, ("llm", "api_key")),  # keys never in a spec
        ({"kind": "llm", "base_url": "ftp://x"}, ("llm", "base_url")),
        ({"kind": "offline", "model": "gpt-4o"}, ("offline", "model")),
    ],
)
def test_a_bad_planner_names_the_field(planner: dict[str, object], field: tuple[str, ...]) -> None:
    with pytest.raises(ValidationError) as info:
        PLANNER.validate_python(planner)
    assert info.value.errors()[0]["loc"] == field


def test_resolve_takes_the_specs_fields_over_the_settings(tmp_path: Path) -> None:
    settings = Settings(
        data_dir=tmp_path,
        llm_provider="openai",
        llm_model="gpt-4o-mini",
        llm_base_url="http://127.0.0.1:1/v1",
    )
    assert resolve(OfflinePlanner(), settings).provider == "offline"
    default = resolve(LlmPlanner(kind="llm"), settings)
    assert (default.provider, default.model, default.base_url) == (
        "openai",
        "gpt-4o-mini",
        "http://127.0.0.1:1/v1",
    )
    own = resolve(
        LlmPlanner(kind="llm", provider="anthropic", model="claude-haiku-4", temperature=0.3),
        settings,
    )
    assert (own.provider, own.model, own.temperature) == ("anthropic", "claude-haiku-4", 0.3)


@pytest.mark.parametrize(
    "planner",
    [
        {"kind": "llm", "model": "m"},  # no provider anywhere
        {"kind": "llm", "provider": "openai"},  # no model anywhere
        {"kind": "llm", "provider": "openai_compatible", "model": "llama3"},  # no base_url
    ],
)
def test_resolve_refuses_an_incomplete_llm_planner(
    tmp_path: Path, planner: dict[str, object]
) -> None:
    with pytest.raises(LlmConfigError):
        resolve(PLANNER.validate_python(planner), Settings(data_dir=tmp_path))


def test_a_missing_key_names_where_it_was_looked_for(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    with pytest.raises(LlmConfigError, match="ANTHROPIC_API_KEY"):
        LlmConfig(provider="anthropic", model="m").api_key()
    with pytest.raises(LlmConfigError, match="MY_KEY"):
        LlmConfig(provider="openai", model="m", api_key_env="MY_KEY").api_key()
    missing = tmp_path / "nope.key"
    with pytest.raises(LlmConfigError, match="nope.key"):
        LlmConfig(provider="openai", model="m", api_key_file=missing).api_key()


def test_the_key_is_read_at_call_time_and_never_kept(tmp_path: Path) -> None:
    path = tmp_path / "openai.key"
    config = LlmConfig(provider="openai", model="m", api_key_file=path)
    path.write_text("sk-from-file-123\n")
    assert config.api_key().get_secret_value() == "sk-from-file-123"
    assert "sk-from-file" not in str(config.api_key())  # a SecretStr, masked when printed
    assert "sk-from-file" not in config.model_dump_json()
    assert "api_key_file" not in config.public()


def test_prices_come_from_the_table_by_longest_prefix_or_the_config() -> None:
    assert price_of("gpt-4o-mini-2024-07-18") == (0.00015, 0.0006)
    assert price_of("gpt-4o-2024-08-06") == (0.0025, 0.01)
    assert price_of("llama3:8b") == (0.0, 0.0)
    own = LlmConfig(
        provider="openai_compatible", model="llama3", price_in_per_1k=0.5, price_out_per_1k=1
    )
    assert cost(own, 2000, 1000) == 2.0
