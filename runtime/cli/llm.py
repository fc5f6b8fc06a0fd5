"""`autopilot llm check`: is the configured model reachable, and what does it cost? One
round trip with a one-line prompt; the key is read from where the config says and
never printed."""

from __future__ import annotations

from typing import Annotated, Literal

import typer

from autopilot.runtime.cli.output import console, emit_json, fail, finish
from autopilot.runtime.config import get_settings
from autopilot.runtime.llm.client import chat
from autopilot.runtime.llm.config import from_settings
from autopilot.runtime.llm.errors import LlmError
from autopilot.runtime.llm.messages import Message

app = typer.Typer(no_args_is_help=True, help="Bring your own LLM: check the configured model.")

PROMPT = "Reply with the single word: ok"
ProviderOpt = Literal["openai", "anthropic", "openai_compatible"]


@app.command()
def check(
    provider: Annotated[
        ProviderOpt | None, typer.Option(help="default: AUTOPILOT_LLM_PROVIDER")
    ] = None,
    model: Annotated[str | None, typer.Option(help="default: AUTOPILOT_LLM_MODEL")] = None,
    base_url: Annotated[
        str | None, typer.Option("--base-url", help="an OpenAI-compatible or proxy endpoint")
    ] = None,
    api_key_env: Annotated[
        str | None, typer.Option("--api-key-env", help="the variable holding the key")
    ] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="print one JSON object on stdout")
    ] = False,
) -> None:
    """One round trip: provider, model, latency, tokens and cost per 1k tokens."""
    base = from_settings(get_settings())
    update: dict[str, object] = {"max_tokens": 16}
    if provider is not None:
        update["provider"] = provider
    if model is not None:
        update["model"] = model
    if base_url is not None:
        update["base_url"] = base_url
    if api_key_env is not None:
        update["api_key_env"] = api_key_env
    config = base.model_copy(update=update)
    if config.provider == "offline":
        fail(
            "provider is offline (no model): pass --provider or set AUTOPILOT_LLM_PROVIDER",
            as_json=as_json,
        )
    try:
        if as_json:
            result = chat(config, [Message(role="user", content=PROMPT)])
        else:
            with console.status(f"asking {config.provider}/{config.model} …"):
                result = chat(config, [Message(role="user", content=PROMPT)])
    except LlmError as err:
        fail(f"{err.code}: {err} (endpoint {config.endpoint})", as_json=as_json)
    price_in, price_out = config.prices()
    out = {
        "ok": True,
        "provider": config.provider,
        "model": result.model or config.model,
        "endpoint": config.endpoint,
        "latency_ms": result.latency_ms,
        "input_tokens": result.usage.input_tokens,
        "output_tokens": result.usage.output_tokens,
        "cost": result.cost,
        "price_in_per_1k": price_in,
        "price_out_per_1k": price_out,
        "reply": result.text[:200],
    }
    if as_json:
        emit_json(out)
    else:
        console.print(
            f"[green]ok[/green] {out['provider']}/{out['model']} at {out['endpoint']}: "
            f"{out['latency_ms']} ms, {out['input_tokens']} in + {out['output_tokens']} out tokens, "
            f"${price_in}/1k in, ${price_out}/1k out (this call ${result.cost})"
        )
    finish(0)
