"""A batch of events folded at once, with the result of folding and rescoring them one
by one (`fold.on_event`): the same rollups and accounts, each live event's trigger
sees the health of the account right after it, the stored score is the last one, and
an alert is raised on each upward crossing of the threshold along the way.

Why a batch: rescoring on each event costs a window query, a model call and a score
rewrite (~20 ms, most of it LightGBM's per-call overhead and TreeSHAP). A batch reads
its accounts, their rollups and windows once (or finds them warm, see `warm`), keeps
the windows current in memory as it folds, scores every event's state in one
vectorised model call and writes each account, rollup and score once. Only what a
person reads is explained: an alert's reasons, and the stored scores of a small batch
(an API event); a bulk batch stores the fast form, which `health.scoring.current`
explains on demand, exactly (as after the full rescore)."""

from __future__ import annotations

import copy
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any, cast

import numpy as np
from sqlalchemy import Table, bindparam, delete, insert, select, update
from sqlmodel import Session, SQLModel, col

from autopilot.runtime.accounts.fold import fold_into
from autopilot.runtime.accounts.snapshot import account_fields, contact_infos
from autopilot.runtime.accounts.subscription_events import Book
from autopilot.runtime.accounts.warm import Warm, stamp
from autopilot.runtime.contracts.account import ContactInfo
from autopilot.runtime.health.features import FEATURES, SIGNALS, WINDOW, Windows, compute
from autopilot.runtime.health.model import Explanation
from autopilot.runtime.health.scoring import current_model, load_windows
from autopilot.runtime.store.accounts import Account
from autopilot.runtime.store.customer import AccountDay, AccountScore, RiskAlert

EXPLAINED_UP_TO = 16  # scores per batch stored with their explanation (~1 ms each)


def _table(model: type[SQLModel]) -> Table:
    return cast(Table, model.__table__)  # type: ignore[attr-defined]


def _columns(row: SQLModel) -> dict[str, Any]:
    values = vars(row)  # the loaded values, without the attribute instrumentation's cost
    out = {}
    for c in _names(type(row)):
        v = values[c]
        # A copy of JSON values: a fold that changed one in place must still be written.
        out[c] = copy.deepcopy(v) if isinstance(v, dict | list) else v
    return out


_NAMES: dict[str, tuple[str, ...]] = {}


def _names(model: type[SQLModel]) -> tuple[str, ...]:
    """A table's columns but its id (computed once per table)."""
    table = _table(model)
    if table.name not in _NAMES:
        _NAMES[table.name] = tuple(c.name for c in table.columns if c.name != "id")
    return _NAMES[table.name]


def load_accounts(session: Session, ids: Iterable[str], warm: Warm) -> dict[str, Account]:
    """The accounts of `ids` that exist, as transient objects (the batch writes them
    back itself), row-locked where the database can: Postgres, in id order, so that
    two batches cannot deadlock; SQLite's write lock is held already."""
    out = {a: warm.accounts[a] for a in ids if a in warm.accounts}
    if cold := sorted(set(ids) - out.keys()):
        t = _table(Account)
        q = select(t).where(t.c.id.in_(cold)).order_by(t.c.id).with_for_update()
        for row in session.connection().execute(q).mappings():
            out[row["id"]] = Account(**row)
    return out


@dataclass(slots=True)
class Scored:
    """An account's state right after an event (or, for history, at the batch's end)."""

    account_id: str
    fields: dict[str, Any]  # the account's snapshot fields at that point
    signals: np.ndarray  # its windows at that point, (len(SIGNALS), WINDOW)
    health: float = 0.0
    risk: float = 0.0


@dataclass
class BatchFold:
    """Fold events, in order, into `accounts` (from `load_accounts`), `finish`, then
    `write` (all reads come before `write`: a batch can be planned without the write
    lock, and written under it)."""

    session: Session
    accounts: dict[str, Account]
    today: date
    now: datetime
    days: set[tuple[str, date]]  # (account, day) of each event: the rollups it folds into
    warm: Warm = field(default_factory=Warm)
    book: Book | None = None  # the accounts' subscriptions (read as events need them)
    points: list[Scored] = field(default_factory=list)
    _index: dict[str, int] = field(default_factory=dict)
    _rows: dict[tuple[str, date], AccountDay] = field(default_factory=dict)
    _windows: np.ndarray = field(default_factory=lambda: np.zeros(0))
    _history: dict[str, Account] = field(default_factory=dict)
    _before: dict[int, dict[str, Any]] = field(default_factory=dict)
    _scores: list[dict[str, Any]] = field(default_factory=list)
    _alerts: list[dict[str, Any]] = field(default_factory=list)
    _explanations: list[dict[str, Any]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._index = {a: i for i, a in enumerate(self.accounts)}
        if self.book is None:
            self.book = Book(self.session, today=self.today)
        self._first = self.today - timedelta(days=WINDOW - 1)
        self._rows = self._load_rollups()
        self._windows = self._load_windows()
        # Each stored row's columns as the store holds them: what the fold changes is
        # what gets written.
        self._before = {
            id(r): _columns(r)
            for r in (*self.accounts.values(), *self._rows.values())
            if r.id is not None
        }

    def _load_rollups(self) -> dict[tuple[str, date], AccountDay]:
        rows = {k: self.warm.days[k] for k in self.days if k in self.warm.days}
        if cold := self.days - rows.keys():
            t = _table(AccountDay)
            q = select(t).where(
                t.c.account_id.in_({a for a, _ in cold}), t.c.day.in_({d for _, d in cold})
            )
            for row in self.session.connection().execute(q).mappings():
                if (key := (row["account_id"], row["day"])) in cold:
                    rows[key] = AccountDay(**row)
            for account_id, day in cold - rows.keys():
                rows[(account_id, day)] = AccountDay(account_id=account_id, day=day)
        return rows

    def _load_windows(self) -> np.ndarray:
        windows = np.zeros((len(self.accounts), len(SIGNALS), WINDOW))
        cold = [a for a in self.accounts.values() if a.id not in self.warm.windows]
        if cold:
            w = load_windows(self.session, cold, self.today)
            loaded = np.stack([w.signals[s] for s in SIGNALS], axis=1)
            for j, a in enumerate(cold):
                windows[self._index[a.id]] = loaded[j]
        for a, i in self._index.items():
            if a in self.warm.windows:
                windows[i] = self.warm.windows[a]
        return windows

    def add(self, account: Account, ev: dict[str, Any], at: datetime, *, live: bool) -> int | None:
        """Fold one event (`EventIn.model_dump(exclude_none=True)`); a live one changes the
        account's current state too. Returns the index of the state to score (in
        `points`) when the event is live and the account active, else None."""
        day = at.astimezone(UTC).date()
        row = self._rows[(account.id, day)]
        assert self.book is not None
        fold_into(row, account, ev, day, current=live, book=self.book)
        i = self._index[account.id]
        if self._first <= day <= self.today:  # the window load_windows would read now
            self._windows[i, :, (day - self._first).days] = [getattr(row, s) for s in SIGNALS]
        if not live:
            self._history[account.id] = account
            return None
        return self._point(account) if account.status == "active" else None

    def _point(self, account: Account) -> int:
        signals = self._windows[self._index[account.id]].copy()
        self.points.append(Scored(account.id, account_fields(account), signals))
        return len(self.points) - 1

    def contacts(self, account_ids: set[str]) -> dict[str, list[ContactInfo]]:
        """The contacts of these accounts (read once, then warm)."""
        if cold := account_ids - self.warm.contacts.keys():
            self.warm.contacts.update(contact_infos(self.session, cold))
        return self.warm.contacts

    def finish(self) -> None:
        """Score every point (`points` then hold their health and risk) and decide what
        to store: each account's last score, the alerts, the explanations to keep. It
        only reads: `write` stores it all, with the accounts and rollups. History
        rescores its (active) accounts once, after the batch, as of today."""
        for account in self._history.values():
            if account.status == "active":
                self._point(account)
        gone = {a for a, account in self.accounts.items() if account.status != "active"}
        if self.points:
            self._score(gone)
        self._keep_explained(gone - {p.account_id for p in self.points})

    def write(self) -> None:
        conn = self.session.connection()
        assert self.book is not None
        self.book.write()
        self._write_rollups()
        if self._scores:
            ids = [r["account_id"] for r in self._scores]
            conn.execute(delete(AccountScore).where(col(AccountScore.account_id).in_(ids)))
            conn.execute(insert(AccountScore), self._scores)
        if self._alerts:
            conn.execute(insert(RiskAlert), self._alerts)
        if self._explanations:
            t = _table(AccountScore)
            conn.execute(
                update(t)
                .where(t.c.account_id == bindparam("b_id"))
                .values(
                    factors=bindparam("b_factors", type_=t.c.factors.type),
                    baseline=bindparam("b_baseline"),
                ),
                self._explanations,
            )

    def _write_rollups(self) -> None:
        """What the batch changed in its accounts and rollups: an UPDATE per set of
        changed columns (the fold changes a few of each row's), an INSERT of new ones."""
        conn = self.session.connection()
        for model, rows in ((Account, self.accounts.values()), (AccountDay, self._rows.values())):
            t = _table(model)
            groups: dict[tuple[str, ...], list[dict[str, Any]]] = {}
            for r in rows:
                if (before := self._before.get(id(r))) is None:
                    continue
                now = vars(r)
                if changed := tuple(c for c, v in before.items() if now[c] != v):
                    groups.setdefault(changed, []).append(
                        {"b_id": r.id, **{f"b_{c}": now[c] for c in changed}}
                    )
            for changed, params in groups.items():
                conn.execute(
                    update(t)
                    .where(t.c.id == bindparam("b_id"))
                    .values({c: bindparam(f"b_{c}", type_=t.c[c].type) for c in changed}),
                    params,
                )
        if new := [r for r in self._rows.values() if r.id is None]:
            t = _table(AccountDay)
            ids = conn.execute(
                insert(t).returning(t.c.id, sort_by_parameter_order=True),
                [{c: getattr(r, c) for c in _names(AccountDay)} for r in new],
            ).scalars()
            for r, i in zip(new, ids, strict=True):
                r.id = i

    def _score(self, gone: set[str]) -> None:
        model = current_model()
        x = compute(self._stacked())
        explained: dict[int, Explanation] = {}
        if len(self.points) <= EXPLAINED_UP_TO:
            explained = dict(enumerate(model.explain(x)))
            health = [e.health for e in explained.values()]
            risk = [e.risk for e in explained.values()]
        else:
            health, risk = (a.tolist() for a in model.score(x))
        for p, h, r in zip(self.points, health, risk, strict=True):
            p.health, p.risk = h, r
        last = {p.account_id: i for i, p in enumerate(self.points)}
        # No threshold met the model's rule: no alerts (the card says so), as in scoring.
        crossed = [] if model.threshold is None else self._crossings(list(last), model.threshold)
        # Explained: an alert's reasons, and the last score of an account no longer
        # active (no rescore follows its folds: `current` must not re-derive it).
        todo = [i for i in crossed if i not in explained]
        todo += [last[a] for a in sorted(gone & last.keys()) if last[a] not in {*explained, *todo}]
        if todo:
            explained.update(zip(todo, model.explain(x[todo]), strict=True))
        self._scores = [
            self._row(self.points[i], x[i], explained.get(i), model.version) for i in last.values()
        ]
        self._alerts = [
            {
                "org_id": self.accounts[self.points[i].account_id].org_id,
                "account_id": self.points[i].account_id,
                "risk": self.points[i].risk,
                "threshold": model.threshold,
                "reasons": [
                    f"{f.label}: {f.value:g} ({f.contribution:+.1f})"
                    for f in explained[i].factors
                    if f.contribution < 0
                ][:3],
                "model_version": model.version,
                "at": self.now,
            }
            for i in crossed
        ]

    def _crossings(self, account_ids: list[str], threshold: float) -> list[int]:
        """The points where the risk crosses the threshold upwards, from the stored one."""
        previous = {a: self.warm.risks[a] for a in account_ids if a in self.warm.risks}
        if cold := [a for a in account_ids if a not in previous]:
            previous |= dict.fromkeys(cold)
            stored = self.session.connection().execute(
                select(col(AccountScore.account_id), col(AccountScore.risk)).where(
                    col(AccountScore.account_id).in_(cold)
                )
            )
            previous |= {str(a): float(r) for a, r in stored.tuples()}
        out = []
        for i, p in enumerate(self.points):
            before = previous[p.account_id]
            if p.risk >= threshold and (before is None or before < threshold):
                out.append(i)
            previous[p.account_id] = p.risk
        self.warm.risks |= previous
        return out

    def _row(self, p: Scored, x: np.ndarray, e: Explanation | None, version: str) -> dict[str, Any]:
        return {
            "account_id": p.account_id,
            "health": p.health,
            "risk": p.risk,
            "baseline": e.baseline if e else 0.0,
            "factors": [f.model_dump() for f in e.factors] if e else [],
            "features": dict(zip(FEATURES, map(float, x), strict=True)),
            "model_version": version,
            "scored_at": self.now,  # its date is the day scored: `current` relies on it
        }

    def _keep_explained(self, gone: set[str]) -> None:
        """An account no longer active keeps its last score, and no rescore follows its
        folds any more: a score of it stored in the fast form (features, no factors) gets
        its explanation from its own features, so that `current` never re-derives it
        from rollups that have moved on."""
        if not gone:
            return
        model = current_model()
        t = _table(AccountScore)
        rows = self.session.connection().execute(
            select(t.c.account_id, t.c.factors, t.c.features, t.c.model_version).where(
                t.c.account_id.in_(sorted(gone))
            )
        )
        todo = [(a, f) for a, factors, f, v in rows if not factors and v == model.version]
        if not todo:
            return
        x = np.array([[features[f] for f in FEATURES] for _, features in todo])
        self._explanations = [
            {"b_id": a, "b_factors": [f.model_dump() for f in e.factors], "b_baseline": e.baseline}
            for (a, _), e in zip(todo, model.explain(x), strict=True)
        ]

    def _stacked(self) -> Windows:
        signals = np.stack([p.signals for p in self.points])
        fields = [p.fields for p in self.points]
        return Windows(
            signals={s: signals[:, j, :] for j, s in enumerate(SIGNALS)},
            seats_purchased=np.array([f["seats_purchased"] for f in fields], dtype=float),
            seats_used=np.array([f["seats_used"] for f in fields], dtype=float),
            nps=np.array([-1 if f["nps"] is None else f["nps"] for f in fields], dtype=float),
            days_to_renewal=np.array(
                [(f["renewal_date"] - self.today).days for f in fields], dtype=float
            ),
        )

    def leave(self) -> Warm:
        """What the next batch may start from, stamped after this one's last write: call
        it last in the transaction, and keep it only once the transaction commits."""
        self.session.flush()
        w = self.warm
        for a, i in self._index.items():  # most recently used last: the oldest go first
            w.accounts.pop(a, None)
            w.accounts[a] = self.accounts[a]
            w.windows[a] = self._windows[i].copy()
        w.days.update(self._rows)
        w.stamp = stamp(self.session, self.today)
        return w
