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
from autopilot.runtime.policy.engine import PolicyEngine
from autopilot.runtime.policy.opa import OpaEngine
from autopilot.runtime.policy.rego import RegoEngine
from autopilot.runtime.policy.regorus_engine import RegorusEngine
from autopilot.runtime.store.db import make_engine
from autopilot.runtime.store.policy_bundles import keep_bundles
from autopilot.tools.builtin import registry as default_registry
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
    policy_status: PolicyStatus | None = None  # set by the policy watcher's owner

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
        timeout=settings.smtp_timeout,
    )


def make_policy_engine(settings: Settings) -> PolicyEngine:
    """In-process Rego by default (`policy_engine` picks the engine); a remote OPA server
    when OPA_URL is set."""
    if settings.opa_url:
        return OpaEngine(
            settings.opa_url, settings.policies_path, timeout_s=settings.policy_timeout_s
        )
    if settings.policy_engine == "regopy":
        return RegoEngine(settings.policies_path)
    return RegorusEngine(settings.policies_path)


def build_services(
    settings: Settings,
    *,
    policy: PolicyEngine | None = None,
    db: Engine | None = None,
    clock: Callable[[], datetime] | None = None,
) -> Services:
    db = db or make_engine(settings.db_url)
    policy = policy or make_policy_engine(settings)
    keep_bundles(db, policy)  # every bundle the gate may decide with, kept for replay
    default_registry.load_entry_points()  # third-party tools (sandboxed)
    load_imported(default_registry, db)  # MCP servers imported into this store (confined)
    return Services(
        settings=settings,
        db=db,
        policy=policy,
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


@dataclass
class PolicyStatus:
    """What `GET /health` says of the policy: the bundle in force, and the last edit that
    was refused (until a good one loads)."""

    bundle_hash: str
    refused: str | None = None


def watch_policies(
    engine: PolicyEngine, status: PolicyStatus | None = None, *, interval_s: float = 2.0
) -> Callable[[], None]:
    """Reload the policies when their files change (atomic swap). A bad edit keeps the
    running bundle and is reported once, loudly (log and `status`); the watcher survives
    any error. Returns a function that stops the watcher."""
    stop = threading.Event()
    log = logging.getLogger(__name__)
    status = status or PolicyStatus(bundle_hash=engine.bundle_hash)

    def loop() -> None:
        while not stop.wait(interval_s):
            try:
                new = engine.reload()
            except Exception as err:  # noqa: BLE001 - any failure keeps the running bundle
                problem = f"{type(err).__name__}: {err}"
                if problem != status.refused:
                    log.error(
                        "policy reload refused, keeping bundle %s: %s",
                        status.bundle_hash[:12],
                        problem,
                    )
                    status.refused = problem
                continue
            status.refused = None
            if new != status.bundle_hash:
                log.warning("policy bundle reloaded: %s -> %s", status.bundle_hash[:12], new[:12])
                status.bundle_hash = new

    threading.Thread(target=loop, name="policy-watcher", daemon=True).start()
    return stop.set
