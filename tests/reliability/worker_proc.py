"""A worker in its own process, for the fault suite to kill -9: the real worker and its
reconciler on the settings in the environment, on the test stacks' clock."""

from __future__ import annotations

import asyncio
import os
import sys

from autopilot.runtime.config import Settings
from autopilot.runtime.devstack.temporal import connect
from autopilot.runtime.execution.outcomes import run_reconciler
from autopilot.runtime.services import build_services
from autopilot.runtime.worker import build_worker
from tests.conftest import NOW


async def main() -> None:
    settings = Settings()
    services = build_services(settings, clock=lambda: NOW)
    client = await connect(settings.temporal_target, settings.temporal_namespace, attempts=40)
    stop = asyncio.Event()
    async with build_worker(client, services, settings.task_queue):
        print("ready", flush=True)
        await run_reconciler(services, stop, interval_s=1.0)


if __name__ == "__main__":
    try:
        asyncio.run(main())
    finally:
        sys.stdout.flush()
        os._exit(0)
