"""A simulated portfolio written into a store (daily rollups and churn outcomes), and
a store's history read back as a Portfolio. Training itself is `honest.py`."""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

import numpy as np
from sqlalchemy import insert
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from autopilot.runtime.devstack.simulator import Portfolio, simulate
from autopilot.runtime.health.asof import read_rollups
from autopilot.runtime.health.features import SIGNALS, WINDOW
from autopilot.runtime.store.accounts import Account
from autopilot.runtime.store.customer import AccountDay


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
    renewal = p.next_renewal(p.days - 1)  # the renewal date as known on the last day
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
                        "renewal_date": start + timedelta(days=int(renewal[i])),
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
    """Every account's full daily history as a Portfolio (days since the first rollup),
    with the snapshot's renewal date: for looking at a store, not for training on it
    (`asof.load_history` knows each day as it was known then)."""
    with Session(db) as session:
        q = select(Account)
        if org_id:
            q = q.where(Account.org_id == org_id)
        accounts = list(session.exec(q))
        grid = read_rollups(session, {a.id: i for i, a in enumerate(accounts)})
    start = grid.start
    p = Portfolio(
        segment=np.array([a.segment for a in accounts]),
        seats_purchased=np.array([a.seats_purchased for a in accounts]),
        arr=np.array([a.arr for a in accounts]),
        signals=grid.signals,
        seats_used=np.where(
            grid.seats_used < 0,
            np.array([a.seats_used for a in accounts])[:, None],
            grid.seats_used,
        ),
        nps=grid.nps,
        renewal_day=np.array([(a.renewal_date - start).days for a in accounts]),
        churn_day=np.array([(a.churned_at - start).days if a.churned_at else -1 for a in accounts]),
        days=grid.days,
    )
    return p, start
