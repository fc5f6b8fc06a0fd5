"""The worker-scoped services object: every activity reaches its clients through it.

It is built once at worker start-up and registered under the worker's task queue,
so several workers in one process (tests) each keep their own."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy.engine import Engine
from temporalio import activity

from autopilot.runtime.agents.specs import load_specs, spec_hash
from autopilot.runtime.config import Settings
from autopilot.runtime.contracts.agent_spec import AgentSpec
from autopilot.runtime.policy.engine import PolicyEngine, PolicyLoadError
from autopilot.runtime.policy.opa import OpaEngine
from autopilot.runtime.policy.rego import RegoEngine
from autopilot.runtime.store.db import make_engine
from autopilot.tools import registry as default_registry
from autopilot.tools.mcp_bridge import load_imported
from autopilot.tools.registry import Registry, SmtpConfig


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass
class Services:
    settings: Settings
    db: Engine
    policy: PolicyEngine
    specs: dict[str, AgentSpec]
    tools: Registry
    smtp: SmtpConfig | None
    policy_timeout_s: float = 2.0
    clock: Callable[[], datetime] = utc_now

    def spec_hashes(self) -> dict[str, str]:
        return {name: spec_hash(spec) for name, spec in self.specs.items()}


def smtp_config(settings: Settings) -> SmtpConfig:
    return SmtpConfig(
        host=settings.smtp_host or "127.0.0.1",
        port=settings.smtp_port,
        mail_from=settings.mail_from,
        username=settings.smtp_username,
        password=settings.smtp_password,
        starttls=settings.smtp_starttls,
        ca_file=settings.smtp_ca_file,
    )


def make_policy_engine(settings: Settings) -> PolicyEngine:
    """In-process Rego by default; a remote OPA server when OPA_URL is set."""
    if settings.opa_url:
        return OpaEngine(
            settings.opa_url, settings.policies_path, timeout_s=settings.policy_timeout_s
        )
    return RegoEngine(settings.policies_path)


def build_services(
    settings: Settings,
    *,
    policy: PolicyEngine | None = None,
    db: Engine | None = None,
    clock: Callable[[], datetime] | None = None,
) -> Services:
    db = db or make_engine(settings.db_url)
    default_registry.load_entry_points()  # third-party tools (sandboxed)
    load_imported(default_registry, db)  # MCP servers imported into this store (confined)
    return Services(
        settings=settings,
        db=db,
        policy=policy or make_policy_engine(settings),
        policy_timeout_s=settings.policy_timeout_s,
        clock=clock or utc_now,
        specs=load_specs(settings.agents_path),
        tools=default_registry,
        smtp=smtp_config(settings),
    )


_by_queue: dict[str, Services] = {}


def register(task_queue: str, services: Services) -> None:
    _by_queue[task_queue] = services


def unregister(task_queue: str) -> None:
    _by_queue.pop(task_queue, None)


def current() -> Services:
    """The services of the worker running the current activity."""
    return _by_queue[activity.info().task_queue]


def watch_policies(engine: PolicyEngine, *, interval_s: float = 2.0) -> Callable[[], None]:
    """Reload the policies when their files change (atomic swap; a bad edit keeps the
    running bundle and is logged). Returns a function that stops the watcher."""
    stop = threading.Event()
    log = logging.getLogger(__name__)

    def loop() -> None:
        current = engine.bundle_hash
        while not stop.wait(interval_s):
            try:
                new = engine.reload()
            except PolicyLoadError as err:
                log.error("policy reload refused, keeping bundle %s: %s", current[:12], err)
                continue
            if new != current:
                log.warning("policy bundle reloaded: %s -> %s", current[:12], new[:12])
                current = new

    threading.Thread(target=loop, name="policy-watcher", daemon=True).start()
    return stop.set
