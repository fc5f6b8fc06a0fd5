"""Sandboxed tools (bubblewrap): hostile tools are stopped with typed errors and the
worker stays healthy; third-party tools are sandboxed by default; a declared host is
reachable, an undeclared one is not."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

import pytest

from autopilot.runtime.devstack.scenarios import drop_events
from autopilot.tools.registry import Registry, ToolArgsInvalid, ToolContext, ToolError, tool
from autopilot.tools.sandbox import (
    SandboxPolicy,
    ToolResourceExceeded,
    ToolSandboxViolation,
    ToolTimeout,
    sandbox_backend,
)
from tests.conftest import Stack
from tests.loopback import webhook_server
from tests.tools import hostile

pytestmark = pytest.mark.skipif(sandbox_backend() == "none", reason="needs bubblewrap or unshare")


def sandboxed(fn: Any, **policy: Any) -> Registry:
    reg = Registry()
    tool(scopes=["test"], effect="external", kind="task", sandbox=SandboxPolicy(**policy), into=reg)(fn)
    return reg


def call(fn: Any, args: dict[str, Any] | None = None, **policy: Any) -> dict[str, Any]:
    return sandboxed(fn, **policy).call(fn.__name__, args or {}, ToolContext(idempotency_key="k1", dry_run=False))


def test_the_store_and_secrets_are_out_of_reach(stack_store: Path) -> None:
    assert stack_store.exists() and os.access(stack_store, os.R_OK)  # readable here, outside
    with pytest.raises(ToolError, match="No such file"):
        call(hostile.read_file, {"path": str(stack_store)})
    os.environ["DB_PASSWORD"] = "hunter2"
    try:
        assert call(hostile.env_secrets)["text"] == ""  # the environment is cleared
    finally:
        del os.environ["DB_PASSWORD"]


def test_undeclared_hosts_are_refused_and_a_declared_one_works() -> None:
    with webhook_server() as hook:
        port = int(hook.url.split(":")[2].split("/")[0])
        with pytest.raises(ToolSandboxViolation, match="not among the tool's declared hosts"):
            call(hostile.connect, {"host": "127.0.0.1", "port": port})  # no hosts declared: no network at all
        with pytest.raises(ToolSandboxViolation):
            call(hostile.connect, {"host": "10.20.30.40", "port": 80}, hosts=(f"127.0.0.1:{port}",))
        out = call(hostile.connect, {"host": "127.0.0.1", "port": port}, hosts=(f"127.0.0.1:{port}",))
        assert "HTTP/1.0" in out["text"] or "HTTP/1.1" in out["text"]


def test_fork_bomb_memory_hog_cpu_burner_and_endless_tool_are_stopped() -> None:
    with pytest.raises(ToolResourceExceeded, match="process limit"):
        call(hostile.fork_bomb, max_processes=8, timeout_s=15)
    with pytest.raises(ToolResourceExceeded, match="memory"):
        call(hostile.hog_memory, {"mb": 4000}, memory_mb=256)
    with pytest.raises(ToolResourceExceeded, match="CPU"):
        call(hostile.burn_cpu, cpu_seconds=1, timeout_s=15)
    with pytest.raises(ToolTimeout):
        call(hostile.spin, timeout_s=1.5)
    with pytest.raises(ToolSandboxViolation, match="subprocess"):
        call(hostile.run_program)


def test_arguments_are_validated_before_anything_runs() -> None:
    with pytest.raises(ToolArgsInvalid):
        call(hostile.hog_memory, {"mb": "lots"})


def test_third_party_tools_are_sandboxed_by_default() -> None:
    import importlib

    reg_mod = importlib.import_module("autopilot.tools.registry")

    token = reg_mod._third_party.set("entry point test (tests.tools.hostile)")
    try:
        reg = Registry()
        tool(scopes=["test"], effect="read", kind="read", into=reg)(hostile.echo)
    finally:
        reg_mod._third_party.reset(token)
    t = reg.get("echo")
    assert t.sandbox is not None and t.source.startswith("entry point")
    assert reg.call("echo", {"host": "x"}, ToolContext(idempotency_key="k9", dry_run=True))["text"] == \
        "hello x dry_run=True key=k9"


async def test_worker_stays_healthy_after_hostile_tools(stack: Stack) -> None:
    for fn, kwargs in ((hostile.fork_bomb, {"max_processes": 8}), (hostile.hog_memory, {"memory_mb": 128}),
                       (hostile.spin, {"timeout_s": 1})):
        with pytest.raises(ToolError):
            await asyncio.to_thread(call, fn, {"mb": 1000}, **kwargs)
    account, = stack.pick("smb", max_arr=50_000)
    wf, = await stack.post_events(drop_events(account))
    result = await stack.run_result(wf)
    assert [o.status for o in result.outcomes] == ["executed"] and len(stack.mails()) == 1


@pytest.fixture
def stack_store(tmp_path: Path) -> Path:
    from autopilot.runtime.store.db import make_engine

    engine = make_engine(f"sqlite:///{tmp_path / 'secret-store.db'}")
    engine.dispose()
    return tmp_path / "secret-store.db"
