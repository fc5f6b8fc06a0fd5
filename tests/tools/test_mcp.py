"""MCP both ways, with real server processes over stdio: an external server's tools
imported under declared scopes and called confined; our registry served to a client
whose token limits what it sees and calls."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import anyio
import pytest

from autopilot.runtime.devstack.seed import seed_portfolio
from autopilot.runtime.services import build_services
from autopilot.runtime.store.db import make_engine
from autopilot.tools.registry import ToolArgsInvalid, ToolContext, ToolError
from tests.conftest import NOW, make_settings
from tests.runtime.test_cli import AUTOPILOT, run_cli

SERVER = [sys.executable, str(Path(__file__).with_name("mcp_server.py"))]


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    settings = make_settings(tmp_path)
    db = make_engine(settings.db_url)
    seed_portfolio(db, n=20, today=NOW.date())
    db.dispose()
    return {"AUTOPILOT_DATA_DIR": str(tmp_path), "DATABASE_URL": settings.db_url}


def test_import_an_mcp_server_and_call_its_tools_confined(env: dict[str, str], tmp_path: Path) -> None:
    r = run_cli("mcp", "import", "calc", "--scope", "math:use", "--effect", "read", "--json", "--", *SERVER, env=env)
    assert r.returncode == 0, r.stdout + r.stderr
    assert json.loads(r.stdout)["tools"] == ["calc.add", "calc.peek"]
    listed = {t["name"]: t for t in json.loads(run_cli("tools", "list", "--json", env=env).stdout)["tools"]}
    assert listed["calc.add"]["scopes"] == ["math:use"] and listed["calc.add"]["sandboxed"] is True
    assert listed["calc.add"]["source"] == "mcp calc"

    from autopilot.runtime.config import Settings
    from autopilot.tools.builtin import registry

    svc = build_services(Settings(data_dir=tmp_path, database_url=env["DATABASE_URL"]))
    assert "calc.add" in svc.tools.tools
    ctx = ToolContext(idempotency_key="k", dry_run=False)
    out = svc.tools.call("calc.add", {"a": 2, "b": 40}, ctx)
    assert out["structured"] == {"sum": 42}
    with pytest.raises(ToolArgsInvalid):
        svc.tools.call("calc.add", {"a": 2}, ctx)
    # Confined: the server process cannot see the store next to it.
    with pytest.raises(ToolError, match="No such file"):
        svc.tools.call("calc.peek", {"path": env["DATABASE_URL"].removeprefix("sqlite:///")}, ctx)
    shown = json.loads(run_cli("tools", "call", "calc.add", "--args", '{"a": 1, "b": 2}', "--json", env=env).stdout)
    assert shown["output"]["structured"] == {"sum": 3}
    assert registry is svc.tools


async def _client(env: dict[str, str], token: str, calls: list[tuple[str, dict[str, Any]]]) -> dict[str, Any]:
    from mcp import ClientSession, StdioServerParameters
    from mcp.client.stdio import stdio_client

    params = StdioServerParameters(command=AUTOPILOT, args=["mcp", "serve"],
                                   env={**env, "AUTOPILOT_MCP_TOKEN": token, "PATH": "/usr/bin:/bin"})
    async with stdio_client(params) as streams, ClientSession(streams[0], streams[1]) as session:
        await session.initialize()
        names = sorted(t.name for t in (await session.list_tools()).tools)
        results = [await session.call_tool(name, args) for name, args in calls]
    return {"tools": names, "results": results}


def test_serve_limits_a_client_to_its_scopes(env: dict[str, str]) -> None:
    token = json.loads(run_cli("mcp", "client", "analyst", "--scope", "accounts:read", "--json", env=env).stdout)["token"]
    out = anyio.run(_client, env, token, [("account_health", {"account_id": "acc-0001"}),
                                          ("send_email", {"to": "a@b.example", "subject": "x", "body": "y"})])
    assert out["tools"] == ["account_health", "account_signals"]
    health, email = out["results"]
    assert not health.is_error and health.structured_content["result"]["data"]["health"] >= 0
    assert email.is_error and "not_granted" in email.content[0].text
    # A client with email:send sees send_email, and gets its dry run: nothing is sent.
    token = json.loads(run_cli("mcp", "client", "ops", "--scope", "email:send", "--json", env=env).stdout)["token"]
    out = anyio.run(_client, env, token, [("send_email", {"to": "a@b.example", "subject": "x", "body": "y"})])
    assert out["tools"] == ["send_email"]
    result = out["results"][0]
    assert result.structured_content["dry_run"] is True and result.structured_content["result"]["delivered"] is False


def test_unknown_token_is_refused(env: dict[str, str]) -> None:
    r = run_cli("mcp", "serve", env={**env, "AUTOPILOT_MCP_TOKEN": "mcp_nope"})
    assert r.returncode != 0 and "unknown" in r.stderr + r.stdout
