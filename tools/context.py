"""What a tool call gets besides its arguments: its idempotency key, dry-run flag, and
the clients a tool may use (the store, SMTP, the runtime settings, the policy limits)."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.engine import Engine

from autopilot.runtime.config import Settings
from autopilot.runtime.policy.limits import PolicyLimits


@dataclass(frozen=True)
class SmtpConfig:
    host: str
    port: int
    mail_from: str
    username: str = ""
    password: str = ""
    starttls: bool = False
    ca_file: str = ""  # a private CA for the server's certificate (empty: the system's)
    timeout: float = 10.0  # seconds per SMTP reply; past it after hand-over: outcome unknown


@dataclass(frozen=True)
class ToolContext:
    idempotency_key: str
    dry_run: bool
    smtp: SmtpConfig | None = None
    db: Engine | None = (
        None  # the store: read tools over account data, the outbox and task connectors
    )
    settings: Settings | None = None  # connector URLs; never secrets beyond what a tool needs
    limits: PolicyLimits | None = None  # the active policy's limits (budget and contact caps)
