"""Stores for the time-honest training tests: a simulated portfolio's daily history,
and optionally contracts whose renewal date is the churn date (the label in disguise)."""

from __future__ import annotations

from datetime import date
from pathlib import Path

from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from autopilot.runtime.devstack.simulator import simulate
from autopilot.runtime.health.training import write_history
from autopilot.runtime.store.accounts import Account
from autopilot.runtime.store.customer import Contract
from autopilot.runtime.store.db import make_engine

START = date(2026, 1, 1)


def make_store(path: Path, *, n: int = 240, days: int = 330, seed: int = 5) -> Engine:
    db = make_engine(f"sqlite:///{path}")
    write_history(db, simulate(n, days=days, seed=seed), start=START)
    return db


def add_leaky_contracts(db: Engine) -> None:
    """One contract per account from the first day, renewing on the churn date for a
    churned account: what a store rebuilt from outcomes looks like."""
    with Session(db) as s:
        for a in s.exec(select(Account)).all():
            s.add(
                Contract(
                    id=f"c-{a.id}",
                    account_id=a.id,
                    start_date=START,
                    renewal_date=a.churned_at or a.renewal_date,
                    list_price=a.arr,
                    net_price=a.arr,
                )
            )
        s.commit()
