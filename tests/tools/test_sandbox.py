"""Sandboxed tools (bubblewrap): hostile tools are stopped with typed errors and the
worker stays healthy; third-party tools are sandboxed by default; a declared host is
reachable, an undeclared one is not."""

from __future__ import annotations

import asyncio
import importlib
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from autopilot.runtime.devstack.scenarios import drop_events
from autopilot.tools.registry import Registry, ToolArgsInvalid, ToolContext, ToolError, tool
from autopilot.tools.sandbox import PIDS_CGROUP, SandboxPolicy, sandbox_backend
from tests.conftest import Stack
from tests.loopback import webhook_server
from tests.tools import hostile

pytestmark = pytest.mark.skipif(sandbox_backend() == "none", reason="needs bubblewrap or unshare")
hides_files = pytest.mark.skipif(sandbox_backend() != "bwrap",
                                 reason="only bubblewrap hides the filesystem (tools/SANDBOX.md)")


def sandboxed(fn: Any, **policy: Any) -> Registry:
    reg = Registry()
    tool(scopes=["test"], effect="external", kind="task", sandbox=SandboxPolicy(**policy),
         into=reg)(fn)
    return reg


def call(fn: Any, args: dict[str, Any] | None = None, **policy: Any) -> dict[str, Any]:
    ctx = ToolContext(idempotency_key="k1", dry_run=False)
    return sandboxed(fn, **policy).call(fn.__name__, args or {}, ctx)


def refused(fn: Any, args: dict[str, Any] | None = None, *, within_s: float,
            **policy: Any) -> ToolError:
    """The ToolError the call ends with; fails (rather than hangs) if it is still running
    after `within_s`, as it would if the sandbox stopped killing it."""
    ended: list[object] = []

    def run() -> None:
        try:
            ended.append(call(fn, args, **policy))
        except Exception as err:  # noqa: BLE001 - handed to the test, which checks its type
            ended.append(err)

    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    worker.join(within_s)
    assert not worker.is_alive(), f"{fn.__name__} still running after {within_s} s"
    outcome, = ended
    assert isinstance(outcome, ToolError), f"{fn.__name__} was not stopped: {outcome!r}"
    return outcome


def fork_bomb_outcomes() -> set[str]:
    """What stops a fork bomb depends on the machine (tools/SANDBOX.md): a pids cgroup, where
    one can be made, stops it at once; otherwise RLIMIT_NPROC may, or (as root in a user
    namespace) only the wall-clock timeout does. Probed here, not through the sandbox's code,
    so that a sandbox that stops making cgroups fails the test on a machine that allows them."""
    probe = PIDS_CGROUP / f"autopilot-probe-{uuid.uuid4().hex[:8]}"
    try:
        probe.mkdir()
        (probe / "pids.max").write_text("1")
    except OSError:
        return {"tool.resource_exceeded", "tool.timeout"}
    finally:
        if probe.exists():
            probe.rmdir()
    return {"tool.resource_exceeded"}


def processes_marked(mark: str) -> list[int]:
    found = []
    for environ in Path("/proc").glob("[0-9]*/environ"):
        try:
            if mark.encode() in environ.read_bytes():
                found.append(int(environ.parent.name))
        except (OSError, ValueError):  # gone meanwhile, or not ours to read
            pass
    return found


def wait_until_gone(mark: str, deadline_s: float) -> list[int]:
    deadline = time.monotonic() + deadline_s
    while (left := processes_marked(mark)) and time.monotonic() < deadline:
        time.sleep(0.1)
    return left


@hides_files
def test_the_store_and_secrets_are_out_of_reach(stack_store: Path) -> None:
    assert stack_store.exists()
    assert call(hostile.read_file, {"path": hostile.__file__})["text"]  # the tool's own code: yes
    with pytest.raises(ToolError) as err:  # the store, readable out here: not there at all
        call(hostile.read_file, {"path": str(stack_store)})
    assert err.value.code == "tool.failed"
    with pytest.MonkeyPatch.context() as env:
        env.setenv("DB_PASSWORD", "hunter2")
        assert call(hostile.env_secrets)["text"] == ""  # the environment is cleared


@hides_files
@pytest.mark.xfail(strict=True, raises=pytest.fail.Exception,
                   reason="known gap: the folder above a local tool package is mounted whole "
                          "(tools/sandbox.py _python_paths), data directory included")
def test_a_store_beside_a_local_tool_package_is_out_of_reach(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from autopilot.runtime.store.db import make_engine

    project = tmp_path / "project"
    (project / "acme_tools").mkdir(parents=True)
    (project / "acme_tools" / "__init__.py").write_text("")
    (project / "acme_tools" / "files.py").write_text(Path(hostile.__file__).read_text())
    store = project / ".autopilot" / "autopilot.db"  # where Settings puts it, under the cwd
    make_engine(f"sqlite:///{store}").dispose()
    monkeypatch.syspath_prepend(str(project))
    for name in ("acme_tools", "acme_tools.files"):
        monkeypatch.delitem(sys.modules, name, raising=False)
    files = importlib.import_module("acme_tools.files")
    assert call(files.read_file, {"path": files.__file__})["text"]
    with pytest.raises(ToolError) as err:
        call(files.read_file, {"path": str(store)})
    assert err.value.code == "tool.failed"


def test_undeclared_hosts_are_refused_and_a_declared_one_works() -> None:
    with webhook_server() as hook:
        port = int(hook.url.split(":")[2].split("/")[0])
        with pytest.raises(ToolError) as err:  # no hosts declared: no network at all
            call(hostile.connect, {"host": "127.0.0.1", "port": port})
        assert err.value.code == "tool.sandbox_violation"
        declared = (f"127.0.0.1:{port}",)
        with pytest.raises(ToolError) as err:
            call(hostile.connect, {"host": "10.20.30.40", "port": 80}, hosts=declared)
        assert err.value.code == "tool.sandbox_violation"
        out = call(hostile.connect, {"host": "127.0.0.1", "port": port}, hosts=declared)
        assert "HTTP/1.0" in out["text"] or "HTTP/1.1" in out["text"]


def test_a_fork_bomb_is_stopped_and_leaves_no_process_behind() -> None:
    mark = f"fork-bomb-{uuid.uuid4().hex}"
    err = refused(hostile.fork_bomb, max_processes=8, timeout_s=15, within_s=60,
                  env={"AUTOPILOT_TEST_MARK": mark})
    assert err.code in fork_bomb_outcomes()
    assert wait_until_gone(mark, deadline_s=10) == []  # its children (asleep for 30 s) too


def test_a_memory_hog_is_stopped() -> None:
    err = refused(hostile.hog_memory, {"mb": 4000}, memory_mb=256, within_s=60)
    assert err.code == "tool.resource_exceeded"


def test_a_cpu_burner_is_stopped_at_its_cpu_limit_before_the_timeout() -> None:
    err = refused(hostile.burn_cpu, cpu_seconds=1, timeout_s=15, within_s=60)
    assert err.code == "tool.resource_exceeded"


def test_an_endless_tool_is_killed_at_its_timeout() -> None:
    started = time.monotonic()
    err = refused(hostile.spin, timeout_s=1.5, within_s=30)
    assert err.code == "tool.timeout" and time.monotonic() - started < 15


def test_starting_another_program_is_refused() -> None:
    err = refused(hostile.run_program, within_s=60)
    assert err.code == "tool.sandbox_violation"


def test_arguments_are_validated_before_anything_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    import subprocess

    def no_process(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("a process was started for invalid arguments")

    monkeypatch.setattr(subprocess, "Popen", no_process)
    with pytest.raises(ToolArgsInvalid) as err:
        call(hostile.hog_memory, {"mb": "lots"})
    assert err.value.code == "tool.args_invalid"


def test_third_party_tools_are_sandboxed_by_default() -> None:
    reg_mod = importlib.import_module("autopilot.tools.registry")

    token = reg_mod._third_party.set("entry point test (tests.tools.hostile)")
    try:
        reg = Registry()
        tool(scopes=["test"], effect="read", kind="read", into=reg)(hostile.echo)
    finally:
        reg_mod._third_party.reset(token)
    t = reg.get("echo")
    assert t.sandbox is not None and t.source.startswith("entry point")
    out = reg.call("echo", {"host": "x"}, ToolContext(idempotency_key="k9", dry_run=True))
    assert out["text"] == "hello x dry_run=True key=k9"


async def test_worker_stays_healthy_after_hostile_tools(stack: Stack) -> None:
    for fn, policy, outcomes in (
        (hostile.fork_bomb, {"max_processes": 8}, fork_bomb_outcomes()),
        (hostile.hog_memory, {"memory_mb": 128}, {"tool.resource_exceeded"}),
        (hostile.spin, {"timeout_s": 1}, {"tool.timeout"}),
    ):
        err = await asyncio.to_thread(refused, fn, {"mb": 1000}, within_s=60, **policy)
        assert err.code in outcomes
    account, = stack.pick("smb", max_arr=50_000)
    wf, = await stack.post_events(drop_events(stack.db, account))
    result = await stack.run_result(wf)
    assert [o.status for o in result.outcomes] == ["executed"] and len(stack.mails()) == 1


@pytest.fixture
def stack_store(tmp_path: Path) -> Path:
    from autopilot.runtime.store.db import make_engine

    engine = make_engine(f"sqlite:///{tmp_path / 'secret-store.db'}")
    engine.dispose()
    return tmp_path / "secret-store.db"
