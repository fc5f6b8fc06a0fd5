"""Start the embedded components (or use the configured ones): Temporal, store,
SMTP sink, reference CRM, worker, API. Shared by `autopilot up` and `autopilot demo`.

The embedded CRM takes a free port, and its URL is recorded in the data directory
(`crm_url`) for as long as it runs: other commands on the same data directory (`runs
rollback` undoes CRM writes in its own process) read it with `recorded_crm`. A file
beside the store, rather than a fixed port, because such a command needs that store
anyway, so the two cannot disagree, and no second setting or port clash is added."""

from __future__ import annotations

import asyncio
import logging
import socket
import subprocess
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field

import uvicorn
from temporalio.client import Client

from autopilot.runtime.accounts.ingest import Ingest
from autopilot.runtime.api.app import create_app
from autopilot.runtime.config import Settings
from autopilot.runtime.devstack.crm import create_crm_app
from autopilot.runtime.devstack.seed import seed_portfolio
from autopilot.runtime.devstack.smtp_sink import start_smtp_sink
from autopilot.runtime.devstack.temporal import connect, start_dev_server
from autopilot.runtime.kb.store import ensure_shipped
from autopilot.runtime.observability import logs, tracing
from autopilot.runtime.policy.decisions import purge as purge_decisions
from autopilot.runtime.services import PolicyStatus, Services, build_services, watch_policies
from autopilot.runtime.worker import beside_worker, build_worker

log = logging.getLogger(__name__)


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex((host, port)) == 0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


CRM_URL_FILE = "crm_url"


def recorded_crm(settings: Settings) -> Settings:
    """`settings` with the URL of the embedded CRM that a running stack recorded in the same
    data directory, when no CRM is configured (AUTOPILOT_CRM_URL wins)."""
    if settings.crm_url:
        return settings
    try:
        url = (settings.data_dir / CRM_URL_FILE).read_text().strip()
    except FileNotFoundError:
        return settings
    return settings.model_copy(update={"crm_url": url}) if url else settings


@dataclass
class Running:
    settings: Settings
    services: Services
    client: Client
    ingest: Ingest
    seeded: int
    urls: dict[str, str] = field(default_factory=dict)


@asynccontextmanager
async def running_stack(
    settings: Settings, *, ui: bool = True, seed: int = 240
) -> AsyncIterator[Running]:
    async with AsyncExitStack() as stack:
        logs.configure(settings)
        tracing.configure(settings)  # traces off unless settings.otel_exporter says where
        stack.callback(tracing.shutdown)  # flushes the spans still batched
        urls: dict[str, str] = {}
        if not settings.crm_url:  # the reference CRM, on loopback, for the CRM connector
            crm_port = free_port()
            crm = uvicorn.Server(
                uvicorn.Config(
                    create_crm_app(),
                    host="127.0.0.1",
                    port=crm_port,
                    log_level="warning",
                    lifespan="off",
                )
            )
            crm_task = asyncio.create_task(crm.serve())
            stack.push_async_callback(_stop_server, crm, crm_task)
            while not crm.started:
                if crm_task.done():
                    crm_task.result()
                await asyncio.sleep(0.02)
            settings = settings.model_copy(update={"crm_url": f"http://127.0.0.1:{crm_port}"})
            urls["crm"] = settings.crm_url
            recorded = settings.data_dir / CRM_URL_FILE
            recorded.parent.mkdir(parents=True, exist_ok=True)
            recorded.write_text(settings.crm_url + "\n")
            stack.callback(
                recorded.unlink, missing_ok=True
            )  # gone with the CRM (its data is in memory)
        if settings.temporal_address:
            target = settings.temporal_address
        else:
            server = start_dev_server(settings, ui=ui)
            stack.callback(_stop, server)
            target = settings.temporal_target
            if ui:
                urls["temporal_ui"] = f"http://127.0.0.1:{settings.temporal_ui_port}"
        client = await connect(target, settings.temporal_namespace, attempts=120)
        urls["temporal"] = target
        services = build_services(settings)
        stack.callback(services.db.dispose)
        services.policy_status = PolicyStatus(bundle_hash=services.policy.bundle_hash)
        stack.callback(watch_policies(services.policy, services.policy_status))
        purge_decisions(
            services.db, retention_days=settings.decision_log_retention_days, now=services.clock()
        )
        seeded = seed_portfolio(services.db, n=seed) if seed else 0
        ensure_shipped(settings)  # the knowledge base that ships with the product
        if not settings.smtp_host:
            smtp = start_smtp_sink(services.db, port=settings.smtp_port)
            stack.callback(smtp.stop)
            urls["smtp"] = f"smtp://127.0.0.1:{settings.smtp_port}"
        worker = build_worker(client, services, settings.task_queue)
        await stack.enter_async_context(worker)
        ingest = Ingest(
            services.db,
            client,
            services.specs,
            task_queue=settings.task_queue,
            policy=services.policy,
        )
        await stack.enter_async_context(beside_worker(ingest, services))
        app = create_app(services, ingest)
        api = uvicorn.Server(
            uvicorn.Config(
                app,
                host=settings.api_host,
                port=settings.api_port,
                log_level="warning",
                lifespan="off",
            )
        )
        api_task = asyncio.create_task(api.serve())
        while not api.started:
            if api_task.done():
                api_task.result()  # surfaces the bind error
            await asyncio.sleep(0.02)
        base = f"http://{settings.api_host}:{settings.api_port}"
        urls.update(
            api=base, api_docs=f"{base}/docs", inbox=f"{base}/inbox", manager=f"{base}/manager"
        )
        try:
            yield Running(settings, services, client, ingest, seeded, urls)
        finally:
            api.should_exit = True
            await api_task


async def _stop_server(server: uvicorn.Server, task: asyncio.Task[None]) -> None:
    server.should_exit = True
    await task


def _stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
