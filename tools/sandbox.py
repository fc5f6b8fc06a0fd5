"""Run a tool in a separate, confined process (see tools/SANDBOX.md).

bubblewrap: new user/PID/IPC/UTS namespaces, no network namespace shared unless the
tool declares hosts, a read-only view of only the interpreter and the code, a private
/tmp, a cleared environment (no secrets), dies with its parent. rlimits cap address
space, CPU seconds, file size; a pids cgroup (or RLIMIT_NPROC) caps processes; a
wall-clock timeout kills the whole process tree. Without bwrap, `unshare` plus the
same limits is the fallback, and the log says so."""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import resource
import shutil
import signal
import subprocess
import sys
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from autopilot.tools.errors import (
    ToolArgsInvalid,
    ToolError,
    ToolResourceExceeded,
    ToolSandboxViolation,
    ToolTimeout,
)

log = logging.getLogger(__name__)
PIDS_CGROUP = Path("/sys/fs/cgroup/pids")


@dataclass(frozen=True)
class SandboxPolicy:
    hosts: tuple[str, ...] = ()  # "host" or "host:port" the tool may connect to; none = no network
    memory_mb: int = 512
    cpu_seconds: int = 10
    max_processes: int = 16
    timeout_s: float = 20.0
    env: dict[str, str] = field(default_factory=dict)  # explicit, non-secret settings for the tool


def _code_roots(module: str) -> list[Path]:
    """The folders the child must see to import the tool and this package."""
    roots: set[Path] = set()
    for name in (module, "autopilot.tools", "autopilot.runtime"):
        spec = importlib.util.find_spec(name)
        if spec is None:
            continue
        for loc in spec.submodule_search_locations or ([spec.origin] if spec.origin else []):
            roots.add(Path(loc).resolve() if Path(loc).is_dir() else Path(loc).resolve().parent)
    return sorted(roots)


def _python_paths(module: str) -> list[str]:
    """sys.path entries that lead to the tool's module (for a module outside site-packages)."""
    spec = importlib.util.find_spec(module)
    if spec is None or spec.origin is None:
        return []
    top = module.split(".")[0]
    origin = Path(spec.origin).resolve()
    for parent in origin.parents:
        if parent.name == top:
            return [str(parent.parent)]
    return [str(origin.parent)]


def sandbox_backend() -> str:
    if shutil.which("bwrap"):
        return "bwrap"
    if shutil.which("unshare"):
        return "unshare"
    return "none"


def confine(
    argv: list[str], policy: SandboxPolicy, *, read_only: list[str], module: str | None = None
) -> list[str]:
    """`argv` wrapped in bubblewrap (or unshare): only `read_only` paths (plus the system
    and the interpreter) are visible, read-only; network only if hosts are declared."""
    backend = sandbox_backend()
    if backend == "bwrap":
        cmd = [
            "bwrap",
            "--unshare-user",
            "--unshare-pid",
            "--unshare-ipc",
            "--unshare-uts",
            "--unshare-cgroup-try",
            "--die-with-parent",
            "--new-session",
            "--cap-drop",
            "ALL",
            "--clearenv",
            "--setenv",
            "HOME",
            "/tmp",
            "--setenv",
            "PATH",
            "/usr/bin:/bin",
            "--chdir",
            "/tmp",
            "--proc",
            "/proc",
            "--dev",
            "/dev",
            "--tmpfs",
            "/tmp",
        ]
        if not policy.hosts:
            cmd.append("--unshare-net")
        for path in sorted(
            {"/usr", "/lib", "/lib64", "/bin", "/etc", sys.prefix, sys.base_prefix, *read_only}
        ):
            if Path(path).exists():
                cmd += ["--ro-bind", path, path]
        for k, v in policy.env.items():
            cmd += ["--setenv", k, v]
        return cmd + argv
    if backend == "unshare":
        log.warning(
            "bubblewrap is not installed: the tool sandbox falls back to `unshare` + rlimits; "
            "the filesystem is NOT hidden from the tool (apt-get install bubblewrap)"
        )
        flags = ["unshare", "--fork", "--pid", "--kill-child", "--ipc", "--uts", "--map-root-user"]
        if not policy.hosts:
            flags.append("--net")
        return flags + argv
    raise ToolError(
        "no sandbox available (install bubblewrap): refusing to run a sandboxed tool unconfined"
    )


def _command(module: str, function: str, policy: SandboxPolicy) -> list[str]:
    pypath = _python_paths(module)
    child = [sys.executable, "-I", "-m", "autopilot.tools.sandbox_child", module, function, *pypath]
    return confine(child, policy, read_only=[*map(str, _code_roots(module)), *pypath])


def spawn_confined(
    argv: list[str], policy: SandboxPolicy, *, read_only: list[str]
) -> tuple[list[str], Path | None]:
    """(argv, cgroup) for a long-lived confined process (an MCP server); the launcher
    (`autopilot.tools.launch`) applies the limits, as the process is spawned by others."""
    return confine(argv, policy, read_only=read_only), _pids_cgroup(policy.max_processes)


def _limits(policy: SandboxPolicy, cgroup: Path | None):  # type: ignore[no-untyped-def]
    def apply() -> None:  # runs in the child between fork and exec
        try:
            os.setsid()
        except PermissionError:  # already a session/group leader (spawned with a new session)
            pass
        if cgroup is not None:
            (cgroup / "cgroup.procs").write_text(str(os.getpid()))
        mem = policy.memory_mb * 1024 * 1024
        resource.setrlimit(resource.RLIMIT_AS, (mem, mem))
        resource.setrlimit(resource.RLIMIT_CPU, (policy.cpu_seconds, policy.cpu_seconds + 1))
        resource.setrlimit(resource.RLIMIT_FSIZE, (16 * 1024 * 1024, 16 * 1024 * 1024))
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
        if cgroup is None:
            resource.setrlimit(resource.RLIMIT_NPROC, (policy.max_processes, policy.max_processes))

    return apply


def _pids_cgroup(limit: int) -> Path | None:
    """A pids cgroup of our own for one call, where the host lets us make one."""
    try:
        cg = PIDS_CGROUP / f"autopilot-{uuid.uuid4().hex[:12]}"
        cg.mkdir()
        (cg / "pids.max").write_text(str(limit + 4))  # bwrap and the interpreter's own
        return cg
    except OSError:
        return None


def drop_cgroup(cg: Path | None) -> None:
    if cg is None:
        return
    try:
        for pid in (cg / "cgroup.procs").read_text().split():
            os.kill(int(pid), signal.SIGKILL)
        cg.rmdir()
    except OSError:
        pass


def run_sandboxed(
    module: str, function: str, payload: dict[str, Any], policy: SandboxPolicy
) -> dict[str, Any]:
    """Call `module.function` in the sandbox with `payload` (args, key, dry_run, hosts);
    returns the tool's result as JSON, or raises a typed ToolError."""
    cmd = _command(module, function, policy)
    cgroup = _pids_cgroup(policy.max_processes)
    env = {"PATH": "/usr/bin:/bin", "HOME": "/tmp", **policy.env}
    proc = subprocess.Popen(
        cmd,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
        preexec_fn=_limits(policy, cgroup),  # noqa: PLW1509 - only prctl/rlimits, async-signal-safe
        close_fds=True,
    )
    try:
        out, err = proc.communicate(
            json.dumps({**payload, "hosts": list(policy.hosts)}).encode(), timeout=policy.timeout_s
        )
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        raise ToolTimeout(
            f"{module}.{function} ran past its {policy.timeout_s:g} s limit and was killed"
        ) from None
    finally:
        drop_cgroup(cgroup)
    if (
        proc.returncode
        in (-signal.SIGXCPU, -signal.SIGKILL, 128 + signal.SIGXCPU, 128 + signal.SIGKILL)
        and not out
    ):
        raise ToolResourceExceeded(
            f"{module}.{function} was killed at its CPU limit ({policy.cpu_seconds} s)"
        )
    try:
        reply = json.loads(out.decode().strip().splitlines()[-1])
    except (ValueError, IndexError):
        raise ToolError(
            f"{module}.{function} died in the sandbox (exit {proc.returncode}): "
            f"{err.decode(errors='replace')[-400:]}"
        ) from None
    if reply.get("ok"):
        return dict(reply["result"])
    kind, message = reply.get("kind"), reply.get("message", "")
    if kind == "violation":
        raise ToolSandboxViolation(f"{module}.{function}: {message}")
    if kind == "resource":
        raise ToolResourceExceeded(f"{module}.{function}: {message}")
    if kind == "args":
        raise ToolArgsInvalid(f"{module}.{function}: {message}")
    raise ToolError(f"{module}.{function}: {message}")
