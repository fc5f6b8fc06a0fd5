"""A store's history as of each day, so that training never reads the future.

The account snapshot holds one renewal date per account, the current one; for a
churned account it is often its churn date. Applying it to every past day leaked
the label (issue #15). Here every feature is built only from what was known on the
day it describes:

- the renewal date and seats purchased as of day d come from the account's
  subscriptions (`terms_from`, the subscriptions history), else from the contract
  that covered d (`Contract` rows, each known from its start date); with neither the
  renewal date is unknown (NaN) for every account alike, never the snapshot's date,
  so that its absence cannot itself tell churners apart;
- usage, seats used and NPS come from the daily rollups up to d;
- an account's start is `Account.started_on` when the store has it, else its first
  contract, else its first rollup: days before it are not days of zero usage and
  no snapshot window may reach before it.

Without subscriptions, seats purchased has no history: the snapshot value is used,
which the card states as a limit."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta

import numpy as np
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from autopilot.runtime.accounts.subscriptions import terms_from
from autopilot.runtime.devstack.simulator import _carry_forward
from autopilot.runtime.health.features import SIGNALS, WINDOW, Windows, compute
from autopilot.runtime.store.accounts import Account
from autopilot.runtime.store.customer import AccountDay, Contract, Subscription


@dataclass
class History:
    """Per account (rows) and day (columns, day 0 = `start`)."""

    ids: list[str]
    start: date
    days: int
    signals: dict[str, np.ndarray]  # each (n, days)
    seats_used: np.ndarray  # (n, days), NaN before the first report
    nps: np.ndarray  # (n, days), -1 before any answer
    renewal_day: np.ndarray  # (n, days): day index of the renewal known that day, NaN unknown
    seats_purchased: np.ndarray  # (n, days)
    start_day: np.ndarray  # (n,) day index the account started
    churn_day: np.ndarray  # (n,) day index of churn, -1 when it stays
    renewal_source: str  # "subscriptions", "contracts" or "unknown"

    @property
    def n(self) -> int:
        return len(self.ids)

    def day_index(self, d: date) -> int:
        return (d - self.start).days

    def date_of(self, i: int) -> date:
        return self.start + timedelta(days=int(i))

    def eligible(self, day: int) -> np.ndarray:
        """Accounts that can be snapshotted at the end of `day`: still customers, and
        a whole feature window after their start (no pre-start zero days in it)."""
        alive = (self.churn_day < 0) | (self.churn_day > day)
        started = self.start_day <= day - WINDOW + 1
        return np.flatnonzero(alive & started) if day >= WINDOW - 1 else np.array([], dtype=int)

    def features(self, day: int, idx: np.ndarray) -> np.ndarray:
        """Feature rows of accounts `idx` as of the end of `day`: columns after `day`
        are never read."""
        lo = day - WINDOW + 1
        w = Windows(
            signals={k: v[idx, lo : day + 1] for k, v in self.signals.items()},
            seats_purchased=self.seats_purchased[idx, day],
            seats_used=self.seats_used[idx, day],
            nps=self.nps[idx, day],
            days_to_renewal=self.renewal_day[idx, day] - day,
        )
        return compute(w)

    def label(self, day: int, idx: np.ndarray, horizon: int) -> np.ndarray:
        c = self.churn_day[idx]
        return ((c > day) & (c - day <= horizon)).astype(int)


@dataclass
class Rollups:
    """The daily rollups of some accounts as (account, day) grids, day 0 = `start`."""

    start: date
    days: int
    signals: dict[str, np.ndarray]  # each (n, days), 0 on days without a rollup
    nps: np.ndarray  # (n, days): the latest answer so far, -1 before any
    seats_used: np.ndarray  # (n, days): the latest report so far, -1 before any
    first_day: np.ndarray  # (n,) each account's first rollup (`days` when none)


def read_rollups(session: Session, index: dict[str, int]) -> Rollups:
    """The rollups of the accounts in `index` (id -> row); ValueError when none."""
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
    n = len(index)
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
    first_day = np.full(n, days, dtype=np.int64)
    np.minimum.at(first_day, ai, di)
    return Rollups(start, days, signals, _carry_forward(nps), _carry_forward(seats), first_day)


def load_history(db: Engine, *, org_id: str | None = None) -> History:
    """Every account's history, each day as it was known then."""
    with Session(db) as session:
        q = select(Account).order_by(Account.id)
        if org_id:
            q = q.where(Account.org_id == org_id)
        accounts = list(session.exec(q))
        index = {a.id: i for i, a in enumerate(accounts)}
        grid = read_rollups(session, index)
        contracts = [c for c in session.exec(select(Contract)).all() if c.account_id in index]
        subs: dict[str, list[Subscription]] = {}
        for sub in session.exec(select(Subscription)).all():
            if sub.account_id in index:
                subs.setdefault(sub.account_id, []).append(sub)
    start, days, n = grid.start, grid.days, len(accounts)
    start_day = grid.first_day.copy()
    renewal = np.full((n, days), np.nan)
    # Oldest first, so that a later contract overrides an earlier one from its start on.
    for c in sorted(contracts, key=lambda c: c.start_date):
        i, s, e = index[c.account_id], (c.start_date - start).days, (c.renewal_date - start).days
        start_day[i] = min(start_day[i], s)
        if e >= 0 and s < days:
            renewal[i, max(s, 0) : min(e, days - 1) + 1] = e
    seats_purchased = np.repeat(
        np.array([a.seats_purchased for a in accounts], dtype=float)[:, None], days, axis=1
    )
    for aid, mine in subs.items():  # the subscriptions history wins where it exists
        i = index[aid]
        for d in range(days):
            terms = terms_from(mine, start + timedelta(days=d))
            renewal[i, d] = (
                np.nan if terms.renewal_date is None else (terms.renewal_date - start).days
            )
            seats_purchased[i, d] = terms.seats
        start_day[i] = (min(sub.start for sub in mine) - start).days
    for a in accounts:
        started_on = getattr(a, "started_on", None)
        if isinstance(started_on, date):
            start_day[index[a.id]] = (started_on - start).days
    return History(
        ids=[a.id for a in accounts],
        start=start,
        days=days,
        signals=grid.signals,
        seats_used=np.where(grid.seats_used < 0, np.nan, grid.seats_used),
        nps=grid.nps,
        renewal_day=renewal,
        seats_purchased=seats_purchased,
        start_day=start_day,
        churn_day=np.array(
            [(a.churned_at - start).days if a.churned_at else -1 for a in accounts], dtype=np.int64
        ),
        renewal_source="subscriptions" if subs else "contracts" if contracts else "unknown",
    )


def samples(
    h: History, first: int, last: int, *, horizon: int, every: int = 1
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Snapshots on days first..last (inclusive, every `every` days): features, labels,
    and each row's account and day index."""
    xs, ys, accs, ds = [], [], [], []
    for day in range(max(first, WINDOW - 1), last + 1, every):
        idx = h.eligible(day)
        if not len(idx):
            continue
        xs.append(h.features(day, idx))
        ys.append(h.label(day, idx, horizon))
        accs.append(idx)
        ds.append(np.full(len(idx), day))
    if not xs:
        return np.empty((0, 0)), np.empty(0, dtype=int), np.empty(0, dtype=int), np.empty(0)
    return np.vstack(xs), np.concatenate(ys), np.concatenate(accs), np.concatenate(ds)
