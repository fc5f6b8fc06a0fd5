"""Accounts and contacts."""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import JSON, Column, Index, text
from sqlmodel import Field, Session, SQLModel, select


class Account(SQLModel, table=True):
    id: str = Field(primary_key=True)
    org_id: str = Field(default="demo", index=True)
    name: str
    segment: str = Field(index=True)
    region: str
    arr: float
    annual_cost_to_serve: float = (
        0.0  # gross-margin input: cloud, support and success cost per year
    )
    seats_purchased: int
    seats_used: int
    active_users_30d: int
    logins_30d: int
    open_tickets: int = 0
    p1_open: int = 0
    nps: int | None = None
    sentiment: float = 0.0
    payment_failures_90d: int = 0
    renewal_date: date
    owner_csm: str = Field(index=True)
    tier: str = "standard"
    status: str = Field(default="active", index=True)  # active|churned
    churned_at: date | None = None
    started_on: date | None = None  # first subscription's start (None: not known)
    custom: dict = Field(default_factory=dict, sa_column=Column(JSON, nullable=False, default=dict))


class Contact(SQLModel, table=True):
    # A send looks its recipient up by address, case-insensitively (tools/email.py):
    # an index on the lowered address, not a scan of every contact per email.
    __table_args__ = (Index("ix_contact_email_lower", text("lower(email)")),)

    id: str = Field(primary_key=True)
    account_id: str = Field(foreign_key="account.id", index=True)
    name: str
    email: str
    role: str
    seniority: str = "manager"  # ic|manager|director|executive
    region: str = ""
    timezone: str = "UTC"
    language: str = "en"
    opted_out: bool = False
    admt_opted_out: bool = False  # CPPA ADMT: no automated significant decisions about them
    notice_at: datetime | None = None  # pre-use notice of automated decision-making sent


def count_accounts(session: Session, *, org_id: str | None = None) -> int:
    query = select(Account.id)
    if org_id is not None:
        query = query.where(Account.org_id == org_id)
    return len(session.exec(query).all())
