"""A worker in its own process, for the fault suite to kill -9: the real worker with what
runs beside it (event dispatcher, reconciler of unknown outcomes, daily rescore) on the
settings in the environment, on the test stacks' clock."""

from __future__ import annotations

import asyncio
import os
import sys

from autopilot.runtime.accounts.ingest import Ingest
from autopilot.runtime.config import Settings
from autopilot.runtime.devstack.temporal import connect
from autopilot.runtime.services import build_services
from autopilot.runtime.worker import beside_worker, build_worker
from tests.conftest import NOW


async def main() -> None:
    settings = Settings()
    services = build_services(settings, clock=lambda: NOW)
    client = await connect(settings.temporal_target, settings.temporal_namespace, attempts=200)
    ingest = Ingest(
        services.db, client, services.specs, task_queue=settings.task_queue, policy=services.policy
    )
    async with build_worker(client, services, settings.task_queue), beside_worker(ingest, services):
        print("ready", flush=True)
        await asyncio.Event().wait()


if __name__ == "__main__":
    try:
        asyncio.run(main())
    finally:
        sys.stdout.flush()
        os._exit(0)
