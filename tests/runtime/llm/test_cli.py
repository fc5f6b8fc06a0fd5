"""`autopilot llm check`, run as a process the way a user runs it, against the loopback
server: one round trip, what it cost, and clear errors for a missing key or endpoint."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from autopilot.runtime.devstack.llm_server import LlmServer, Reply
from tests.runtime.llm.conftest import OPENAI_KEY

AUTOPILOT = str(Path(sys.executable).parent / "autopilot")


def run(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    base = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("AUTOPILOT_LLM_", "OPENAI", "ANTHROPIC"))
    }
    return subprocess.run(
        [AUTOPILOT, "llm", "check", *args],
        check=False,
        capture_output=True,
        text=True,
        timeout=120,
        env={**base, "AUTOPILOT_LLM_LOOPBACK_ONLY": "1", **env},
    )


def test_check_makes_one_round_trip_and_reports_its_cost(server: LlmServer, tmp_path: Path) -> None:
    server.push(Reply(text="ok", input_tokens=9, output_tokens=1))
    proc = run(
        "--provider",
        "openai",
        "--model",
        "gpt-4o-mini",
        "--base-url",
        server.base_url,
        "--json",
        AUTOPILOT_DATA_DIR=str(tmp_path),
        OPENAI_API_KEY=OPENAI_KEY,
    )
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["ok"] is True
    assert (out["provider"], out["model"], out["reply"]) == ("openai", "gpt-4o-mini", "ok")
    assert (out["input_tokens"], out["output_tokens"]) == (9, 1)
    assert (out["price_in_per_1k"], out["price_out_per_1k"]) == (0.00015, 0.0006)
    assert out["latency_ms"] > 0
    assert len(server.requests) == 1 and server.requests[0].body["model"] == "gpt-4o-mini"
    assert OPENAI_KEY not in proc.stdout + proc.stderr


def test_check_takes_the_settings_defaults(server: LlmServer, tmp_path: Path) -> None:
    key = tmp_path / "anthropic.key"
    key.write_text("sk-ant-file-key\n")
    proc = run(
        "--json",
        AUTOPILOT_DATA_DIR=str(tmp_path),
        AUTOPILOT_LLM_PROVIDER="anthropic",
        AUTOPILOT_LLM_MODEL="claude-haiku-4-5",
        AUTOPILOT_LLM_BASE_URL=server.anthropic_url,
        AUTOPILOT_LLM_API_KEY_FILE=str(key),
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["provider"] == "anthropic"
    assert server.requests[0].path == "/v1/messages"
    assert "sk-ant-file-key" in server.requests[0].headers.get(
        "authorization", ""
    ) + server.requests[0].headers.get("x-api-key", "")


def test_a_missing_key_names_the_variable(server: LlmServer, tmp_path: Path) -> None:
    proc = run(
        "--provider",
        "anthropic",
        "--model",
        "m",
        "--base-url",
        server.anthropic_url,
        "--json",
        AUTOPILOT_DATA_DIR=str(tmp_path),
    )
    assert proc.returncode == 2
    out = json.loads(proc.stdout)
    assert out["ok"] is False and "ANTHROPIC_API_KEY" in out["error"]
    assert server.requests == []


def test_an_unreachable_endpoint_is_a_clear_error(tmp_path: Path) -> None:
    proc = run(
        "--provider",
        "openai",
        "--model",
        "m",
        "--base-url",
        "http://127.0.0.1:9/v1",
        "--json",
        AUTOPILOT_DATA_DIR=str(tmp_path),
        OPENAI_API_KEY=OPENAI_KEY,
    )
    assert proc.returncode == 2
    out = json.loads(proc.stdout)
    assert out["error"].startswith("llm.retryable") and "127.0.0.1:9" in out["error"]


def test_offline_and_a_public_host_under_the_guard_are_refused(tmp_path: Path) -> None:
    offline = run("--json", AUTOPILOT_DATA_DIR=str(tmp_path))
    assert offline.returncode == 2 and "offline" in json.loads(offline.stdout)["error"]
    public = run(
        "--provider",
        "openai",
        "--model",
        "gpt-4o",
        "--json",
        AUTOPILOT_DATA_DIR=str(tmp_path),
        OPENAI_API_KEY=OPENAI_KEY,
    )
    assert public.returncode == 2 and json.loads(public.stdout)["error"].startswith("llm.guard")
