"""Engine and sessions: SQLite by default, any SQLAlchemy URL (Postgres) by DATABASE_URL.

Opening the store migrates it (`migrations.upgrade`): every process that opens it
(API, worker, CLI) sees the schema of the code it runs."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import event
from sqlalchemy.engine import Engine
from sqlmodel import Session, create_engine

# Import every table module so that the migrations (and their checks) see them.
from autopilot.runtime.store import (  # noqa: F401  (every table registers with the metadata)
    accounts,
    actions,
    approvals,
    audit,
    compliance,
    consent,
    customer,
    events,
    mail,
    mcp,
    migrations,
    outbox,
    outcomes,
    policy_bundles,
    tool_calls,
    users,
)


def make_engine(url: str) -> Engine:
    """The store at `url`, migrated to the newest revision."""
    engine = connect(url)
    migrations.upgrade(engine)
    return engine


def connect(url: str) -> Engine:
    """The store at `url` as it is (no migration): for `autopilot db` and migration tests."""
    if not url.startswith("sqlite:///"):
        return create_engine(url, pool_pre_ping=True)
    Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})

    @event.listens_for(engine, "connect")
    def _pragmas(dbapi_conn, _record):  # type: ignore[no-untyped-def]
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.close()

    return engine


@contextmanager
def transaction(engine: Engine, *, writes: bool = False) -> Iterator[Session]:
    """One unit of work: commit on success, roll back everything on any error.

    `writes`: it reads rows and writes values computed from them (an account fold), so
    on SQLite it takes the write lock up front (BEGIN IMMEDIATE): two writers queue
    instead of one overwriting the other's update or failing on a stale snapshot.
    On other databases the caller locks the rows it will change (SELECT … FOR UPDATE)."""
    with Session(engine, expire_on_commit=False) as session:
        try:
            if writes and engine.dialect.name == "sqlite":
                session.connection().exec_driver_sql("BEGIN IMMEDIATE")
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise
