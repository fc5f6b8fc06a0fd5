"""The full rescore's bulk read (one query, rows straight off the cursor, one array
assignment per slice) gives the same windows and scores as reading each account's
rollups one by one: the old path, kept here as the reference."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from autopilot.runtime.devstack.simulator import simulate
from autopilot.runtime.health import scoring
from autopilot.runtime.health.features import SIGNALS, WINDOW, Windows, compute
from autopilot.runtime.health.scoring import current_model, load_windows, rescore_all
from autopilot.runtime.health.training import write_history
from autopilot.runtime.store.accounts import Account
from autopilot.runtime.store.customer import AccountDay, AccountScore
from autopilot.runtime.store.db import make_engine

START = date(2026, 6, 1)
DAYS = 150  # more history than a window: rows before it, and (from TODAY) after it
TODAY = START + timedelta(days=120)
ACCOUNTS = 620  # above the bulk read's threshold (500)


@pytest.fixture(scope="module")
def db(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Engine]:
    engine = make_engine(f"sqlite:///{Path(tmp_path_factory.mktemp('bulk')) / 'b.db'}")
    write_history(engine, simulate(ACCOUNTS, days=DAYS, seed=5, dip_rate=0.2), start=START)
    with Session(engine) as s:  # the simulator's churned accounts are not rescored
        for a in s.exec(select(Account)):
            a.status = "active"
            s.add(a)
        s.commit()
    yield engine
    engine.dispose()


def one_by_one(session: Session, accounts: list[Account], today: date) -> Windows:
    """Each account's rollups read through the ORM and put in place, day by day."""
    first = today - timedelta(days=WINDOW - 1)
    signals = {k: np.zeros((len(accounts), WINDOW)) for k in SIGNALS}
    for i, a in enumerate(accounts):
        rows = session.exec(
            select(AccountDay).where(
                AccountDay.account_id == a.id, AccountDay.day >= first, AccountDay.day <= today
            )
        )
        for row in rows:
            for k in SIGNALS:
                signals[k][i, (row.day - first).days] = float(getattr(row, k))
    return scoring._windows(accounts, signals, today)


def accounts_of(session: Session) -> list[Account]:
    return list(session.exec(select(Account).order_by(col(Account.id))))


def test_bulk_window_read_equals_reading_each_account(db: Engine) -> None:
    with Session(db) as s:
        everyone = accounts_of(s)
        # The whole portfolio; a range with accounts left out (their rows are skipped);
        # a handful (read by id).
        for accounts in (everyone, everyone[40:600:2][::-1], everyone[100:112]):
            bulk, reference = load_windows(s, accounts, TODAY), one_by_one(s, accounts, TODAY)
            for k in SIGNALS:
                assert np.array_equal(bulk.signals[k], reference.signals[k]), k
            assert np.array_equal(compute(bulk), compute(reference))


def test_full_rescore_stores_the_scores_of_the_one_by_one_path(
    db: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(scoring, "PASS", 250)  # several passes, one transaction
    assert rescore_all(db, today=TODAY) == ACCOUNTS
    model = current_model()
    with Session(db) as s:
        accounts = accounts_of(s)
        x = compute(one_by_one(s, accounts, TODAY))
        expected = model.explain(x)
        for a, e, features in zip(accounts, expected, x.tolist(), strict=True):
            stored = s.get(AccountScore, a.id)
            assert stored is not None
            assert (stored.health, stored.risk) == (e.health, e.risk), a.id
            assert list(stored.features.values()) == features
