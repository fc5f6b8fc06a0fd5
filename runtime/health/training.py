"""Training Health 2.0 from the store's history (daily rollups and churn outcomes),
and writing a simulated portfolio into a store (how the shipped model was made)."""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

import numpy as np
from sqlalchemy import insert
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from autopilot.runtime.devstack.simulator import (
    Portfolio,
    _carry_forward,
    simulate,
    training_samples,
)
from autopilot.runtime.health.features import SIGNALS, WINDOW
from autopilot.runtime.health.model import HealthModel, train
from autopilot.runtime.store.accounts import Account
from autopilot.runtime.store.customer import AccountDay

HORIZON = 45


def write_history(
    db: Engine,
    p: Portfolio,
    *,
    start: date,
    org_id: str = "sim",
    prefix: str = "sim",
    ids: list[str] | None = None,
) -> list[str]:
    """Daily rollups (days with activity) of a simulated portfolio. Without `ids` the
    accounts are created too, churn marked on them; with `ids`, existing accounts
    get the history."""
    create = ids is None
    ids = ids or [f"{prefix}-{i + 1:05d}" for i in range(p.n)]
    with Session(db) as session:
        if create:
            session.execute(
                insert(Account),
                [
                    {
                        "id": ids[i],
                        "org_id": org_id,
                        "name": f"Simulated {i + 1}",
                        "segment": str(p.segment[i]),
                        "region": "eu",
                        "arr": float(p.arr[i]),
                        "seats_purchased": int(p.seats_purchased[i]),
                        "seats_used": int(p.seats_used[i, -1]),
                        "active_users_30d": 0,
                        "logins_30d": 0,
                        "renewal_date": start + timedelta(days=int(p.renewal_day[i])),
                        "owner_csm": "sim",
                        "custom": {},
                        "status": "churned" if p.churn_day[i] >= 0 else "active",
                        "tier": "standard",
                        "churned_at": start + timedelta(days=int(p.churn_day[i]))
                        if p.churn_day[i] >= 0
                        else None,
                    }
                    for i in range(p.n)
                ],
            )
        active = np.argwhere(
            (p.signals["logins"] > 0) | (p.signals["tickets"] > 0) | (p.signals["sentiment_n"] > 0)
        )
        nps_day = np.diff(np.concatenate([np.full((p.n, 1), -1), p.nps], axis=1), axis=1) != 0
        rows: list[dict[str, Any]] = []
        for i, d in active:
            row = {
                "account_id": ids[i],
                "day": start + timedelta(days=int(d)),
                "nps": int(p.nps[i, d]) if nps_day[i, d] else -1,
                "seats_used": int(p.seats_used[i, d]),
            }
            row.update(
                {
                    k: float(p.signals[k][i, d])
                    if k == "sentiment_sum"
                    else int(p.signals[k][i, d])
                    for k in SIGNALS
                }
            )
            rows.append(row)
        for chunk in range(0, len(rows), 20_000):
            session.execute(insert(AccountDay), rows[chunk : chunk + 20_000])
        session.commit()
    return ids


def seed_history(db: Engine, *, org_id: str, today: date, seed: int = 7) -> int:
    """The last WINDOW days of usage for an organisation's accounts (no churners: the
    demo portfolio is alive today), so that Health 2.0 has windows to score."""
    with Session(db) as session:
        accounts = list(
            session.exec(select(Account).where(Account.org_id == org_id).order_by(Account.id))
        )
    if not accounts:
        return 0
    p = simulate(
        len(accounts),
        days=WINDOW,
        seed=seed,
        churn_rate=0.0,
        dip_rate=0.1,
        segment=np.array([a.segment for a in accounts]),
        seats=np.array([a.seats_purchased for a in accounts]),
    )
    write_history(db, p, start=today - timedelta(days=WINDOW - 1), ids=[a.id for a in accounts])
    return len(accounts)


def history_from_store(db: Engine, *, org_id: str | None = None) -> tuple[Portfolio, date]:
    """Every account's full daily history as a Portfolio (days since the first rollup)."""
    with Session(db) as session:
        q = select(Account)
        if org_id:
            q = q.where(Account.org_id == org_id)
        accounts = list(session.exec(q))
        index = {a.id: i for i, a in enumerate(accounts)}
        cols = ["account_id", "day", *SIGNALS, "nps", "seats_used"]
        rows = [
            r
            for r in session.execute(select(*(getattr(AccountDay, c) for c in cols))).all()
            if r[0] in index
        ]
    if not rows:
        raise ValueError("the store has no daily history to train on")
    start = min(r[1] for r in rows)
    days = (max(r[1] for r in rows) - start).days + 1
    n = len(accounts)
    ai = np.array([index[r[0]] for r in rows])
    di = np.array([(r[1] - start).days for r in rows])
    values = np.array([r[2:] for r in rows], dtype=float)
    signals = {k: np.zeros((n, days)) for k in SIGNALS}
    for j, k in enumerate(SIGNALS):
        signals[k][ai, di] = values[:, j]
    nps = np.full((n, days), -1.0)
    nps[ai, di] = values[:, len(SIGNALS)]
    seats = np.full((n, days), -1.0)
    seats[ai, di] = values[:, len(SIGNALS) + 1]
    seats_used = _carry_forward(seats)
    seats_used = np.where(
        seats_used < 0, np.array([a.seats_used for a in accounts])[:, None], seats_used
    )
    p = Portfolio(
        segment=np.array([a.segment for a in accounts]),
        seats_purchased=np.array([a.seats_purchased for a in accounts]),
        arr=np.array([a.arr for a in accounts]),
        signals=signals,
        seats_used=seats_used,
        nps=_carry_forward(nps),
        renewal_day=np.array([(a.renewal_date - start).days for a in accounts]),
        churn_day=np.array([(a.churned_at - start).days if a.churned_at else -1 for a in accounts]),
        days=days,
    )
    return p, start


def train_from_store(db: Engine, *, org_id: str | None = None, seed: int = 0) -> HealthModel:
    """Accounts split 80/20 (by a seeded shuffle) into training and validation."""
    p, start = history_from_store(db, org_id=org_id)
    order = np.random.default_rng(seed).permutation(p.n)
    cut = int(p.n * 0.8)
    x, y = training_samples(subset(p, order[:cut]), horizon=HORIZON)
    xv, yv = training_samples(subset(p, order[cut:]), horizon=HORIZON)
    end = start + timedelta(days=p.days - 1)
    return train(
        x,
        y,
        x_val=xv,
        y_val=yv,
        horizon=HORIZON,
        training_window=f"{start} to {end}",
        source=f"store {db.url.render_as_string(hide_password=True)}, {p.n} accounts "
        f"({int((p.churn_day >= 0).sum())} churned)",
    )


def subset(p: Portfolio, idx: np.ndarray) -> Portfolio:
    return Portfolio(
        segment=p.segment[idx],
        seats_purchased=p.seats_purchased[idx],
        arr=p.arr[idx],
        signals={k: v[idx] for k, v in p.signals.items()},
        seats_used=p.seats_used[idx],
        nps=p.nps[idx],
        renewal_day=p.renewal_day[idx],
        churn_day=p.churn_day[idx],
        days=p.days,
    )
