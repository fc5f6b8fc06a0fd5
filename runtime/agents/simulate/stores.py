"""The simulation's throwaway stores (SQLite in memory, gone with the process) and its
set-up: the agents' store and the rule playbook's, their services, the portfolio."""

from __future__ import annotations

import dataclasses
import sqlite3
from datetime import date, timedelta
from pathlib import Path

from sqlalchemy import create_engine, func
from sqlalchemy.engine import Engine
from sqlalchemy.pool import StaticPool
from sqlmodel import SQLModel, col, select

from autopilot.runtime.accounts.snapshot import get_snapshot
from autopilot.runtime.agents.simulate.world import Clock, Portfolio, SimulationError
from autopilot.runtime.config import Settings
from autopilot.runtime.devstack.seed import seed_portfolio
from autopilot.runtime.services import Services, build_services
from autopilot.runtime.store.accounts import Account
from autopilot.runtime.store.db import transaction
from autopilot.runtime.store.mail import ReceivedMail
from autopilot.runtime.store.outbox import CsmTask, InAppMessage
from autopilot.runtime.store.tool_calls import ToolCallRecord


def prepare_stores(
    settings: Settings, *, from_store: bool, accounts: int, seed: int, start: date
) -> tuple[Engine, Engine]:
    """The agents' store (the demo portfolio seeded, or a copy of the configured
    store) and the rule playbook's (a copy of it as it is before day 1): both
    SQLite in memory, gone with the process."""
    db = memory_engine()
    if from_store:
        url = settings.db_url
        if not url.startswith("sqlite:///"):
            raise SimulationError(f"only a SQLite store can be copied, not {url.split(':')[0]}")
        source = Path(url.removeprefix("sqlite:///"))
        if not source.is_file():
            raise SimulationError(f"no store at {source}")
        src = sqlite3.connect(f"file:{source}?mode=ro", uri=True)  # read, never written
        try:
            _copy(src, db)
        finally:
            src.close()
        SQLModel.metadata.create_all(db)  # tables newer than the copied store
        _ledger_indexes(db)
    else:
        seed_portfolio(db, n=accounts, seed=seed, today=start, org_id="demo")
    rules_db = memory_engine()
    _copy(_driver(db), rules_db)
    return db, rules_db


def make_services(
    settings: Settings,
    *,
    folder: Path,
    db: Engine,
    rules_db: Engine,
    clock: Clock,
    agents: list[str] | None,
) -> tuple[Services, Services]:
    """The agents' services and the rule playbook's: sending nothing, and refusing an
    agent that is not configured."""
    settings = settings.model_copy(
        # A data folder of its own (empty, deleted at the end): nothing lands in the real one.
        update={"data_dir": folder, "database_url": "sqlite://", "smtp_host": ""}
    )
    svc = build_services(settings, db=db, clock=clock)
    svc.smtp = None  # nothing is sent: and nothing could be
    unknown = sorted(set(agents or []) - set(svc.specs))
    if unknown:
        raise SimulationError(
            f"no agent {', '.join(unknown)} (agents: {', '.join(sorted(svc.specs))})"
        )
    return svc, dataclasses.replace(svc, db=rules_db)


def read_portfolio(
    db: Engine, *, org_id: str | None, segment: str | None, start: date, days: int
) -> tuple[Portfolio, list[Account]]:
    """The simulated accounts (active, in the segment) and every active account of the
    organisation (the simulator draws a history for each)."""
    with transaction(db) as session:
        q = select(Account).where(Account.status == "active").order_by(col(Account.id))
        if org_id is not None:
            q = q.where(Account.org_id == org_id)
        every = list(session.exec(q))
        if not every:
            raise SimulationError("the portfolio has no active account")
        chosen = [a for a in every if segment in (None, a.segment)]
        if not chosen:
            raise SimulationError(f"no active account in segment {segment}")
        snaps = {a.id: get_snapshot(session, account_id=a.id, today=start) for a in chosen}
    horizon = start + timedelta(days=days)
    return Portfolio(
        ids=[a.id for a in chosen],
        arr={a.id: a.arr for a in chosen},
        segment={a.id: a.segment for a in chosen},
        risk0={i: s.churn_risk for i, s in snaps.items() if s is not None},
        renewing={a.id for a in chosen if a.renewal_date <= horizon},
    ), every


SIDE_EFFECTS = {  # what a tool that ran would have left in the store
    "tool_calls": ToolCallRecord,
    "mails": ReceivedMail,
    "in_app_messages": InAppMessage,
    "csm_tasks": CsmTask,
}


def side_effects(*stores: Engine) -> dict[str, int]:
    """Rows that executed tools (and the SMTP sink) write, over the throwaway stores."""
    counts = dict.fromkeys(SIDE_EFFECTS, 0)
    for db in stores:
        with transaction(db) as session:
            for name, table in SIDE_EFFECTS.items():
                counts[name] += session.exec(select(func.count()).select_from(table)).one()
    return counts


def memory_engine() -> Engine:
    """A throwaway SQLite store in memory: one connection, shared by every session."""
    engine = create_engine(
        "sqlite://", poolclass=StaticPool, connect_args={"check_same_thread": False}
    )
    SQLModel.metadata.create_all(engine)
    _ledger_indexes(engine)
    return engine


def _ledger_indexes(engine: Engine) -> None:
    """Indexes for the ledger's reads, which a simulation makes tens of thousands of times
    on a ledger that grows all along (they change what is fast, not what is read)."""
    with engine.begin() as conn:
        for name, columns in (
            ("account_agent", "account_id, agent, status, updated_at, expected_cost"),
            ("segment_status", "segment, status, updated_at, expected_cost"),
            ("account_recipient", "account_id, recipient, status, updated_at"),
        ):
            conn.exec_driver_sql(
                f"CREATE INDEX IF NOT EXISTS ix_simulate_{name} ON actionrecord ({columns})"
            )


def _driver(engine: Engine) -> sqlite3.Connection:
    conn = engine.raw_connection().driver_connection
    assert isinstance(conn, sqlite3.Connection)
    return conn


def _copy(source: sqlite3.Connection, target: Engine) -> None:
    """A consistent copy of a SQLite database (its WAL included) into `target`."""
    source.backup(_driver(target))
