"""Schema migrations (Alembic), applied whenever the store is opened.

The store is opened by `make_engine`, which calls `upgrade`: a new database gets every
revision, one at or behind the newest gets the missing ones, and a database made by
`create_all` before migrations existed (store tables, no `alembic_version`) is
stamped as the baseline first — its tables are the baseline — then upgraded.

A change to a table model needs a revision beside it: `autopilot db revision -m "…"`
writes one by comparing the models with a database at the newest revision; the test
`test_migrations_match_the_models` fails until it exists."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import inspect
from sqlalchemy.engine import Connection, Engine
from sqlmodel import SQLModel

BASELINE = "0001"
# The tables of the baseline revision: a pre-migrations store is completed with these only,
# since a table added later comes with its own revision.
BASELINE_TABLES = frozenset(
    [
        "account",
        "accountday",
        "accountscore",
        "actionrecord",
        "admtdecision",
        "admtnotice",
        "apitoken",
        "apitokenvalidity",
        "approval",
        "approvalcomment",
        "approvalvote",
        "attributedrevenue",
        "auditcheckpoint",
        "auditentry",
        "compliancegap",
        "contact",
        "contract",
        "costentry",
        "csmtask",
        "customfieldschema",
        "event",
        "eventdispatch",
        "eventkey",
        "inappmessage",
        "ledgerversion",
        "loginthrottle",
        "mcpclient",
        "mcpimport",
        "modelcardrecord",
        "optoutseen",
        "organization",
        "outcomecheck",
        "policydecisionrecord",
        "receivedmail",
        "riskalert",
        "supervisorconflict",
        "toolcallrecord",
        "user",
        "websession",
    ]
)
VERSION_TABLE = "alembic_version"
# Any constant: Postgres serialises concurrent start-ups (worker and API) on it.
_PG_LOCK_KEY = 0x61757470696C6F74  # "autpilot"
_HERE = Path(__file__).resolve().parent


def config(connection: Connection | None = None) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(_HERE))
    if connection is not None:
        cfg.attributes["connection"] = connection
    return cfg


def head() -> str:
    """The newest revision shipped with this version."""
    revision = ScriptDirectory.from_config(config()).get_current_head()
    assert revision is not None, "no migrations shipped"
    return revision


def current(engine: Engine) -> str | None:
    """The revision the database is at; None for a database never migrated."""
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def upgrade(engine: Engine, revision: str = "head") -> str | None:
    """Apply the missing revisions (stamping a pre-migrations database as the baseline
    first) in one transaction; returns the revision the database is at afterwards."""
    with engine.begin() as conn:
        if conn.dialect.name == "sqlite":
            conn.exec_driver_sql("BEGIN IMMEDIATE")  # the write lock before reading the state
        elif conn.dialect.name == "postgresql":
            conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({_PG_LOCK_KEY})")
        tables = set(inspect(conn).get_table_names())
        cfg = config(conn)
        if VERSION_TABLE not in tables and tables & set(SQLModel.metadata.tables):
            # Made by create_all before migrations: add the tables it would have added
            # (as it did on every start), then call that the baseline.
            baseline = [t for n, t in SQLModel.metadata.tables.items() if n in BASELINE_TABLES]
            SQLModel.metadata.create_all(conn, tables=baseline)
            command.stamp(cfg, BASELINE)
        command.upgrade(cfg, revision)
        return MigrationContext.configure(conn).get_current_revision()
