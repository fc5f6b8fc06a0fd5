"""The registry from the outside: `autopilot tools list|show|call`, entry-point plug-ins."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from autopilot.tools.builtin import registry
from autopilot.tools.registry import ToolContext
from tests.runtime.test_cli import run_cli


def test_tools_list_json_has_scopes_effects_and_compensation() -> None:
    out = json.loads(run_cli("tools", "list", "--json").stdout)
    tools = {t["name"]: t for t in out["tools"]}
    assert tools["send_email"]["scopes"] == ["email:send"] and tools["send_email"]["irreversible"] is True
    assert tools["send_in_app_message"]["compensate"] == "cancel_in_app_message"
    assert tools["crm_update_field"]["compensate"] == "crm_revert_field"
    assert tools["create_csm_task"]["effect"] == "write" and tools["account_health"]["effect"] == "read"


def test_tools_show_and_dry_run_call() -> None:
    shown = json.loads(run_cli("tools", "show", "send_offer", "--json").stdout)
    assert shown["args_schema"]["properties"]["discount_pct"]["maximum"] == 100
    r = run_cli("tools", "call", "send_email", "--args", '{"to": "a@b.example", "subject": "Hi", "body": "x"}',
                "--dry-run", "--json")
    out = json.loads(r.stdout)
    assert out["ok"] and out["output"]["delivered"] is False and "Subject: Hi" in out["output"]["preview"]
    refused = run_cli("tools", "call", "send_email", "--args", "{}", "--json")
    assert refused.returncode != 0 and "--dry-run" in json.loads(refused.stdout)["error"]
    bad = run_cli("tools", "call", "send_email", "--args", '{"to": "nope"}', "--dry-run", "--json")
    assert bad.returncode != 0 and "tool.args_invalid" in json.loads(bad.stdout)["error"]


def test_entry_point_plugin_loads_sandboxed(tmp_path: Path) -> None:
    dist = tmp_path / "autopilot_greeter-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: autopilot-greeter\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[autopilot.tools]\ngreeter = tests.tools.plugin_tool\n")
    sys.path.insert(0, str(tmp_path))
    try:
        loaded = registry.load_entry_points()
    finally:
        sys.path.remove(str(tmp_path))
    assert "greeter" in loaded
    t = registry.get("plugin_greet")
    assert t.sandbox is not None and t.source.startswith("entry point greeter")
    out = registry.call("plugin_greet", {"name": "Ana"}, ToolContext(idempotency_key="k", dry_run=False))
    assert out == {"text": "hello Ana", "pid_namespace_init": True}  # it ran in its own PID namespace
