"""The customer data model beyond the account snapshot: daily usage rollups (what the
window features are computed from), contracts, cost entries (the CbR ledger), Health
2.0 scores with their explanation, early-warning alerts, and per-organisation custom
field schemas."""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import JSON, Column, Index, UniqueConstraint
from sqlmodel import Field, SQLModel

COST_KINDS = ("csm_labour", "support", "education", "cloud", "discount", "incentive", "model")


class AccountDay(SQLModel, table=True):
    """One account's activity on one day: the rollup every event folds into."""

    __table_args__ = (UniqueConstraint("account_id", "day", name="uq_account_day"),)

    id: int | None = Field(default=None, primary_key=True)
    account_id: str = Field(foreign_key="account.id", index=True)
    day: date = Field(index=True)
    logins: int = 0
    active_users: int = 0
    modules: int = 0  # bit set of MODULES used that day
    tickets: int = 0
    p1: int = 0
    sentiment_sum: float = 0.0
    sentiment_n: int = 0
    payment_failed: int = 0
    nps: int = -1  # an NPS answer that day (-1: none)
    seats_used: int = -1  # seats in use that day, when reported (-1: not reported)


class Contract(SQLModel, table=True):
    id: str = Field(primary_key=True)
    account_id: str = Field(foreign_key="account.id", index=True)
    term_months: int = 12
    start_date: date
    renewal_date: date = Field(index=True)
    list_price: float  # per year
    net_price: float  # per year, after discount
    discount_pct: float = 0.0
    status: str = Field(default="active", index=True)  # active|renewed|churned|expanded


class CostEntry(SQLModel, table=True):
    """A cost attributed to an account, and where known to the agent, playbook and action."""

    __table_args__ = (Index("ix_cost_period", "org_id", "at"),)

    id: int | None = Field(default=None, primary_key=True)
    org_id: str = Field(default="demo", index=True)
    account_id: str = Field(foreign_key="account.id", index=True)
    kind: str = Field(index=True)  # one of COST_KINDS
    amount: float
    hours: float | None = None  # CSM labour: hours × rate = amount
    rate: float | None = None
    agent: str | None = Field(default=None, index=True)
    playbook: str | None = Field(default=None, index=True)
    action_key: str | None = Field(default=None, unique=True)  # the action's run key: booked once
    at: datetime
    note: str = ""


class AccountScore(SQLModel, table=True):
    """The latest Health 2.0 score of an account, with its exact explanation."""

    account_id: str = Field(foreign_key="account.id", primary_key=True)
    health: float = Field(index=True)
    risk: float = Field(index=True)
    baseline: float
    factors: list = Field(sa_column=Column(JSON, nullable=False))
    features: dict = Field(sa_column=Column(JSON, nullable=False))
    model_version: str
    scored_at: datetime


class RiskAlert(SQLModel, table=True):
    """Churn risk crossed the model's alert threshold (upwards)."""

    id: int | None = Field(default=None, primary_key=True)
    org_id: str = Field(default="demo", index=True)
    account_id: str = Field(foreign_key="account.id", index=True)
    risk: float
    threshold: float
    reasons: list = Field(sa_column=Column(JSON, nullable=False))
    model_version: str
    at: datetime = Field(index=True)


class CustomFieldSchema(SQLModel, table=True):
    """A JSON schema per organisation for `Account.custom`."""

    org_id: str = Field(primary_key=True)
    json_schema: dict = Field(sa_column=Column(JSON, nullable=False))


class Subscription(SQLModel, table=True):
    """A product an account pays for, from `start` until `end` (exclusive; None: open):
    ARR, seats and the renewal date as of any day are derived from these."""

    __table_args__ = (UniqueConstraint("account_id", "product", "start", name="uq_subscription"),)

    id: int | None = Field(default=None, primary_key=True)
    account_id: str = Field(foreign_key="account.id", index=True)
    product: str
    mrr: float
    quantity: int = 0  # seats
    start: date
    end: date | None = None
    billing_period: int = 12  # months between renewals


class OrgConfig(SQLModel, table=True):
    """An organisation's own vocabulary: its segments and product modules (the built-in
    ones when it has none)."""

    org_id: str = Field(primary_key=True)
    segments: list = Field(sa_column=Column(JSON, nullable=False))
    modules: list = Field(sa_column=Column(JSON, nullable=False))


class HistoryBatch(SQLModel, table=True):
    """One batch of a history import, written in the batch's transaction: a re-run of the
    same file (same content, mapping and batch size) skips the batches recorded here."""

    __table_args__ = (UniqueConstraint("digest", "batch", name="uq_history_batch"),)

    id: int | None = Field(default=None, primary_key=True)
    org_id: str = Field(default="demo", index=True)
    source: str  # the file's name, for people
    digest: str = Field(index=True)  # sha256 of the file, the mapping and the batch size
    batch: int
    rows: int
    days: int  # account-days written
    at: datetime
