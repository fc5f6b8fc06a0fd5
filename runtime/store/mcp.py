"""MCP: imported servers (their command, declared scopes, their tools' schemas) and
the clients allowed to call this product's tools (token hash and scopes)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, Column
from sqlmodel import Field, SQLModel


class McpImport(SQLModel, table=True):
    name: str = Field(primary_key=True)
    argv: list = Field(sa_column=Column(JSON, nullable=False))
    scopes: list = Field(sa_column=Column(JSON, nullable=False))
    effect: str = "external"
    tools: list = Field(sa_column=Column(JSON, nullable=False))  # name, description, input_schema
    imported_at: datetime


class McpClient(SQLModel, table=True):
    token_hash: str = Field(primary_key=True)
    name: str = Field(index=True)
    org_id: str = "demo"
    scopes: list = Field(sa_column=Column(JSON, nullable=False))
    created_at: datetime
