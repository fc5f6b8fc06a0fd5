"""LlmConfig: which provider and model a call goes to, with what limits and prices.

Keys are never in it: it names where the key is (an environment variable or a file) and
`api_key()` reads it at call time, so a config can be logged, serialised into a Temporal
history or written to a governance record without leaking a secret."""

from __future__ import annotations

import json
import os
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr

from autopilot.runtime.llm.errors import LlmConfigError

if TYPE_CHECKING:
    from autopilot.runtime.config import Settings
    from autopilot.runtime.contracts.agent_spec import PlannerSettings

Provider = Literal["offline", "openai", "anthropic", "openai_compatible"]
# Where each provider's key is looked for when the config names no variable.
DEFAULT_KEY_ENV: dict[str, str] = {
    "openai": "OPENAI_API_KEY",
    "anthropic": "ANTHROPIC_API_KEY",
    "openai_compatible": "OPENAI_API_KEY",
}
# Public endpoints, used when no base_url is given (the guard refuses them in tests).
DEFAULT_BASE_URL: dict[str, str] = {
    "openai": "https://api.openai.com/v1",
    "anthropic": "https://api.anthropic.com",
}


class LlmConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    provider: Provider = "offline"
    model: str = ""
    base_url: str | None = None
    temperature: float = Field(default=0.0, ge=0, le=2)
    max_tokens: int = Field(default=1024, ge=1, le=200_000)
    timeout_s: float = Field(default=60.0, gt=0)
    api_key_env: str | None = None
    api_key_file: Path | None = None
    # USD per 1,000 tokens; None = from the price table (unknown model: 0, and said so).
    price_in_per_1k: float | None = Field(default=None, ge=0)
    price_out_per_1k: float | None = Field(default=None, ge=0)

    @property
    def endpoint(self) -> str:
        return self.base_url or DEFAULT_BASE_URL.get(self.provider, "")

    def key_source(self) -> str:
        """Where the key is looked for, for error messages (never the key)."""
        if self.api_key_file is not None:
            return f"file {self.api_key_file}"
        return f"environment variable {self.api_key_env or DEFAULT_KEY_ENV.get(self.provider, '?')}"

    def api_key(self) -> SecretStr:
        """The key, read now from the file or the environment; a clear error naming
        where it was looked for when it is not there. An OpenAI-compatible server
        (vLLM, Ollama) may need none."""
        key = ""
        if self.api_key_file is not None:
            try:
                key = self.api_key_file.read_text().strip()
            except OSError as err:
                raise LlmConfigError(
                    f"api_key_file {self.api_key_file} cannot be read: {err.strerror}"
                ) from None
        else:
            key = os.environ.get(self.api_key_env or DEFAULT_KEY_ENV.get(self.provider, ""), "")
        if not key:
            if self.provider == "openai_compatible":
                return SecretStr("not-needed")
            raise LlmConfigError(f"no API key for {self.provider}: set the {self.key_source()}")
        return SecretStr(key)

    def prices(
        self, overrides: dict[str, tuple[float, float]] | None = None
    ) -> tuple[float, float]:
        """(input, output) USD per 1,000 tokens."""
        if self.price_in_per_1k is not None and self.price_out_per_1k is not None:
            return self.price_in_per_1k, self.price_out_per_1k
        return price_of(self.model, overrides)

    def public(self) -> dict[str, object]:
        """What governance records and model cards show: no key, no key path."""
        return self.model_dump(mode="json", exclude={"api_key_file"})


@lru_cache(maxsize=1)
def _price_table() -> dict[str, tuple[float, float]]:
    raw = json.loads(resources.files("autopilot.runtime.llm").joinpath("prices.json").read_text())
    return {k: (float(v[0]), float(v[1])) for k, v in raw.items() if not k.startswith("_")}


def price_of(
    model: str, overrides: dict[str, tuple[float, float]] | None = None
) -> tuple[float, float]:
    """Longest matching prefix in the overrides, then in the table; (0, 0) when unknown."""
    for table in (overrides or {}, _price_table()):
        best = max((p for p in table if model.startswith(p)), key=len, default=None)
        if best is not None:
            return table[best]
    return 0.0, 0.0


def cost(
    config: LlmConfig,
    input_tokens: int,
    output_tokens: int,
    overrides: dict[str, tuple[float, float]] | None = None,
) -> float:
    p_in, p_out = config.prices(overrides)
    return round(input_tokens / 1000 * p_in + output_tokens / 1000 * p_out, 6)


def from_settings(settings: Settings) -> LlmConfig:
    return LlmConfig(
        provider=settings.llm_provider,
        model=settings.llm_model,
        base_url=settings.llm_base_url or None,
        api_key_file=settings.llm_api_key_file,
    )


def resolve(planner: PlannerSettings, settings: Settings) -> LlmConfig:
    """The LLM configuration an agent's planner uses: its own fields over the settings'
    defaults. An offline planner resolves to the offline provider."""
    base = from_settings(settings)
    if planner.kind == "offline":
        return LlmConfig(provider="offline")
    provider = planner.provider or base.provider
    if provider == "offline":
        raise LlmConfigError(
            "planner.kind is llm but no provider is set (planner.provider or AUTOPILOT_LLM_PROVIDER)"
        )
    model = planner.model or base.model
    if not model:
        raise LlmConfigError(
            "planner.kind is llm but no model is set (planner.model or AUTOPILOT_LLM_MODEL)"
        )
    base_url = planner.base_url or base.base_url
    if provider == "openai_compatible" and not base_url:
        raise LlmConfigError(
            "provider openai_compatible needs a base_url (planner.base_url or AUTOPILOT_LLM_BASE_URL)"
        )
    return LlmConfig(
        provider=provider,
        model=model,
        base_url=base_url,
        temperature=planner.temperature,
        max_tokens=planner.max_tokens,
        api_key_env=planner.api_key_env,
        api_key_file=base.api_key_file,
    )
