"""Organisations (tenants), users with roles and books, API tokens (with their expiry and
revocation) and web sessions. Tokens and session ids are stored hashed; passwords with
argon2id (older scrypt hashes are upgraded at the next login)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, Column
from sqlmodel import Field, SQLModel


class Organization(SQLModel, table=True):
    id: str = Field(primary_key=True)
    name: str


class User(SQLModel, table=True):
    id: str = Field(primary_key=True)  # the handle; accounts name it as owner_csm (the book)
    org_id: str = Field(foreign_key="organization.id", index=True)
    email: str = Field(unique=True, index=True)
    name: str
    roles: list = Field(sa_column=Column(JSON, nullable=False))
    password_hash: str = ""
    active: bool = True
    created_at: datetime


class ApiToken(SQLModel, table=True):
    token_hash: str = Field(primary_key=True)
    user_id: str = Field(foreign_key="user.id", index=True)
    label: str = ""
    created_at: datetime
    last_used_at: datetime | None = None


class ApiTokenValidity(SQLModel, table=True):
    """How long a token is good for, and whether it was revoked. A table beside `apitoken`
    rather than columns in it: tables come from create_all, which adds missing tables to
    an existing database but never columns. A token without a row here was issued before
    expiry existed; it counts as issued with the default lifetime."""

    token_hash: str = Field(primary_key=True, foreign_key="apitoken.token_hash")
    expires_at: datetime
    revoked_at: datetime | None = None


class WebSession(SQLModel, table=True):
    session_hash: str = Field(primary_key=True)
    user_id: str = Field(foreign_key="user.id", index=True)
    expires_at: datetime


class LoginThrottle(SQLModel, table=True):
    """Failed sign-ins per email: past a few, the email is locked out for a doubling time
    (even the right password waits), so guessing costs hours, not seconds."""

    email: str = Field(primary_key=True)
    failures: int = 0
    locked_until: datetime | None = None
