"""Scoring: fold events into daily rollups, compute window features and Health 2.0
for one account (incremental, on each event) or for the whole portfolio (full
rescore), store the explained score and raise an early-warning alert when the churn
risk crosses the model's threshold."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass, fields
from datetime import UTC, date, datetime, time, timedelta
from itertools import chain
from operator import itemgetter
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from sqlalchemy import String, Table, bindparam, cast, delete, insert
from sqlalchemy.engine import Engine
from sqlmodel import Session, SQLModel, col, select

from autopilot.runtime.config import get_settings
from autopilot.runtime.health.features import FEATURES, SIGNALS, WINDOW, Windows, compute
from autopilot.runtime.health.model import Explanation, Factor, HealthModel, default_model_dir
from autopilot.runtime.loops import every
from autopilot.runtime.store.accounts import Account
from autopilot.runtime.store.customer import AccountDay, AccountScore, RiskAlert

log = logging.getLogger(__name__)
_lock = threading.Lock()
_models: dict[str, HealthModel] = {}
_silent: set[str] = set()  # models without a threshold, already logged


def cast_table(model: type[SQLModel]) -> Table:
    return model.__table__  # type: ignore[attr-defined,return-value]


def current_model(folder: str | None = None) -> HealthModel:
    """The configured model (AUTOPILOT_HEALTH_MODEL_DIR, else the one shipped), loaded
    once per process."""
    configured = get_settings().health_model_dir
    key = folder or str(configured or default_model_dir())
    with _lock:
        if key not in _models:
            _models[key] = HealthModel.load(Path(key))
        return _models[key]


# --- windows from the store ----------------------------------------------------

FETCH = 50_000  # rollup rows converted at a time: the Python rows of a full read stay small


class Scorable(Protocol):
    """What scoring reads of an account: an `Account`, or a row of just these columns."""

    @property
    def id(self) -> str: ...
    @property
    def org_id(self) -> str: ...
    @property
    def seats_purchased(self) -> int: ...
    @property
    def seats_used(self) -> int: ...
    @property
    def nps(self) -> int | None: ...
    @property
    def renewal_date(self) -> date: ...


@dataclass(frozen=True, slots=True)
class AccountState:
    """An account as the full rescore reads it (a row, not an ORM object: 10,000 of those
    cost more than the scoring itself)."""

    id: str
    org_id: str
    seats_purchased: int
    seats_used: int
    nps: int | None
    renewal_date: date


STATE_COLUMNS = tuple(f.name for f in fields(AccountState))


class _Index(dict[str, int]):
    """A lookup whose misses are -1 (a row of an account not asked for, a day outside)."""

    def __missing__(self, key: str) -> int:
        return -1


class _Days(_Index):
    """Window offset of a day as the store gives it (ISO text): the window's days are
    known up front; anything else is parsed (and -1 outside the window)."""

    def __init__(self, first: date) -> None:
        super().__init__({(first + timedelta(days=k)).isoformat(): k for k in range(WINDOW)})
        self.first = first

    def __missing__(self, key: str) -> int:
        k = (date.fromisoformat(str(key)[:10]) - self.first).days
        return k if 0 <= k < WINDOW else -1


def load_windows(session: Session, accounts: Sequence[Scorable], today: date) -> Windows:
    """The last WINDOW days of rollups of `accounts` (one query), as arrays.

    A portfolio's read is ~1 M rows: they come from the DBAPI cursor as plain tuples, in
    slices of FETCH (no SQLAlchemy row per row, no list of them all), and go into one
    array with a single assignment per slice."""
    first = today - timedelta(days=WINDOW - 1)
    index = _Index((a.id, i) for i, a in enumerate(accounts))
    days = _Days(first)
    # (signal, account, day): each signal's (accounts, WINDOW) block is C-contiguous,
    # as `compute` has always been given.
    block = np.zeros((len(SIGNALS), len(accounts), WINDOW))
    conn = session.connection()
    t = cast_table(AccountDay)
    # The day as ISO text (the same on SQLite and Postgres).
    day_text = cast(t.c.day, String)
    q = select(t.c.account_id, day_text, *(t.c[s] for s in SIGNALS))
    if len(accounts) < 500:
        q = q.where(t.c.account_id.in_(list(index)), t.c.day >= first, t.c.day <= today)
    elif conn.dialect.name == "sqlite":
        # Expressions on the columns, so that SQLite reads the table in order: it keeps no
        # statistics and would take an index, a row lookup per rollup, twice the cost
        # even when the window is a twentieth of the table. (Postgres plans by its own.)
        q = q.where(
            day_text >= first.isoformat(),
            day_text <= today.isoformat(),
            cast(t.c.account_id, String).between(min(index), max(index)),
        )
    else:  # the accounts' range: a pass over some of them reads only theirs
        q = q.where(
            t.c.day >= first, t.c.day <= today, t.c.account_id.between(min(index), max(index))
        )
    width = len(SIGNALS)
    values = itemgetter(*range(2, 2 + width))
    result = conn.execute(q)
    cursor = result.cursor  # the DBAPI's own: its rows are plain tuples
    assert cursor is not None
    try:
        while rows := cursor.fetchmany(FETCH):
            n = len(rows)
            ai = np.fromiter(map(index.__getitem__, map(itemgetter(0), rows)), np.int64, n)
            di = np.fromiter(map(days.__getitem__, map(itemgetter(1), rows)), np.int64, n)
            v = np.fromiter(chain.from_iterable(map(values, rows)), float, n * width)
            keep = (ai >= 0) & (di >= 0)
            block[:, ai[keep], di[keep]] = v.reshape(n, width)[keep].T
    finally:
        result.close()
    return _windows(accounts, {s: block[j] for j, s in enumerate(SIGNALS)}, today)


def _windows(accounts: Sequence[Scorable], signals: dict[str, np.ndarray], today: date) -> Windows:
    return Windows(
        signals=signals,
        seats_purchased=np.array([a.seats_purchased for a in accounts], dtype=float),
        seats_used=np.array([a.seats_used for a in accounts], dtype=float),
        nps=np.array([-1 if a.nps is None else a.nps for a in accounts], dtype=float),
        days_to_renewal=np.array([(a.renewal_date - today).days for a in accounts], dtype=float),
    )


# --- scoring ---------------------------------------------------------------------


def score(
    session: Session,
    accounts: Sequence[Scorable],
    *,
    today: date,
    now: datetime | None = None,
    model: HealthModel | None = None,
    explain: bool = True,
) -> list[AccountScore]:
    """Score `accounts` and store the results (replacing their previous scores, in
    bulk); an alert on each upward crossing of the model's threshold."""
    rows = _store(session, accounts, today=today, now=now, model=model, explain=explain)
    return [AccountScore(**r) for r in rows]


def _store(
    session: Session,
    accounts: Sequence[Scorable],
    *,
    today: date,
    now: datetime | None,
    model: HealthModel | None,
    explain: bool,
) -> list[dict[str, Any]]:
    """`score`, its rows as the plain dicts it inserts (the full rescore needs no more)."""
    model = model or current_model()
    now = now or datetime.combine(
        today, datetime.now(UTC).timetz()
    )  # scored_at's date is the day scored
    ids = [a.id for a in accounts]
    x = compute(load_windows(session, accounts, today))
    previous = _replaced(session, ids)
    # The full rescore's fast path stores risk and health; factors are computed on demand.
    explanations: list[Explanation | None] = (
        list(model.explain(x)) if explain else [None] * len(accounts)
    )
    healths, risks = ([], []) if explain else (a.tolist() for a in model.score(x))
    rows, alerts = [], []
    threshold = model.threshold
    if threshold is None and accounts and model.version not in _silent:
        _silent.add(model.version)  # said once per model and process, not on every event
        log.warning(
            "model %s has no alert threshold (%s): scoring raises no alerts",
            model.version,
            model.card.get("threshold", {}).get("note", "no threshold meets the rule"),
        )
    version = model.version
    for i, (account, features) in enumerate(zip(accounts, x.tolist(), strict=True)):
        e = explanations[i]
        risk = e.risk if e else risks[i]
        health = e.health if e else healths[i]
        rows.append(
            {
                "account_id": account.id,
                "health": health,
                "risk": risk,
                "baseline": e.baseline if e else 0.0,
                "factors": [f.model_dump() for f in e.factors] if e else [],
                "features": dict(zip(FEATURES, features, strict=True)),
                "model_version": version,
                "scored_at": now,
            }
        )
        before = previous.get(account.id)
        if threshold is None:  # no threshold met the card's rule: no alerts, said once above
            continue
        if risk >= threshold and (before is None or before < threshold):
            reasons = [
                f"{f.label}: {f.value:g} ({f.contribution:+.1f})"
                for f in (e.factors if e else [])
                if f.contribution < 0
            ][:3]
            alerts.append(
                RiskAlert(
                    org_id=account.org_id,
                    account_id=account.id,
                    risk=risk,
                    threshold=threshold,
                    reasons=reasons,
                    model_version=version,
                    at=now,
                )
            )
    if rows:
        session.connection().execute(insert(AccountScore), rows)
    session.add_all(alerts)
    return rows


def _replaced(session: Session, ids: list[str]) -> dict[str, float]:
    """The stored risks of `ids` (to find upward crossings), deleted: new scores follow.
    A long list is read by its id range and deleted by one statement run per id: an IN
    list of thousands costs more to compile than the reading and deleting."""
    conn, t = session.connection(), cast_table(AccountScore)
    if len(ids) < 500:
        previous = dict(
            conn.execute(select(t.c.account_id, t.c.risk).where(t.c.account_id.in_(ids))).all()
        )
        conn.execute(delete(t).where(t.c.account_id.in_(ids)))
        return previous
    wanted = set(ids)
    q = select(t.c.account_id, t.c.risk).where(t.c.account_id.between(min(ids), max(ids)))
    previous = {a: r for a, r in conn.execute(q) if a in wanted}
    if previous:
        conn.execute(
            delete(t).where(t.c.account_id == bindparam("b_id")), [{"b_id": a} for a in previous]
        )
    return previous


PASS = 10_000  # accounts scored per pass: a pass's windows take ~6 KB an account


def _rescore(
    session: Session, where: list[Any], *, today: date, model: HealthModel | None = None
) -> int:
    """Score the active accounts matching `where`, PASS at a time, in the fast form."""
    t = cast_table(Account)
    q = select(*(t.c[c] for c in STATE_COLUMNS)).where(t.c.status == "active", *where)
    states = [AccountState(*row) for row in session.connection().execute(q.order_by(t.c.id))]
    for at in range(0, len(states), PASS):
        _store(session, states[at : at + PASS], today=today, now=None, model=model, explain=False)
    return len(states)


def rescore_all(
    db: Engine, *, today: date, org_id: str | None = None, model: HealthModel | None = None
) -> int:
    """The full rescore: every active account, stored in one transaction."""
    with Session(db) as session:
        where = [col(Account.org_id) == org_id] if org_id else []
        count = _rescore(session, where, today=today, model=model)
        session.commit()
    return count


def rescore_stale(db: Engine, *, today: date) -> int:
    """Rescore every active account whose stored score is from before `today` (or that
    has none): health moves with time even when no event arrives (windows slide, the
    renewal comes closer). Returns the accounts rescored."""
    with Session(db) as session:
        fresh = select(AccountScore.account_id).where(
            col(AccountScore.scored_at) >= datetime.combine(today, time.min, UTC)
        )
        count = _rescore(session, [col(Account.id).not_in(fresh)], today=today)
        session.commit()
    return count


async def run_daily_rescore(
    db: Engine, stop: asyncio.Event, *, check_every_s: float = 60.0
) -> None:
    """Beside the worker: once a day (and at start), the accounts not scored today."""
    done: date | None = None

    async def step() -> None:
        nonlocal done
        today = datetime.now(UTC).date()
        if today != done:
            count = await asyncio.to_thread(rescore_stale, db, today=today)
            log.info("daily rescore: %d account(s) as of %s", count, today)
            done = today

    await every(check_every_s, stop, step, what="daily rescore")


def current(session: Session, account: Account, *, today: date) -> Explanation:
    """The account's health as everyone sees it: its stored score (the last one the
    event path or the rescore wrote), explained. Triggers, agents, the inbox, the API
    and the CLI all read this one figure. A score stored without its factors (the full
    rescore's fast path) is explained as of the day it was scored, which reproduces
    it exactly; an account never scored is scored now."""
    stored = session.get(AccountScore, account.id)
    model = current_model()
    if stored is None or stored.model_version != model.version:
        return explain_at(session, account, day=today, model=model)
    if stored.factors:
        return Explanation(
            health=stored.health,
            risk=stored.risk,
            baseline=stored.baseline,
            factors=[Factor.model_validate(f) for f in stored.factors],
            model_version=stored.model_version,
        )
    scored_on = stored.scored_at.date()
    return explain_at(session, account, day=scored_on, model=model)


def explain_at(
    session: Session, account: Account, *, day: date, model: HealthModel | None = None
) -> Explanation:
    """A fresh explanation of one account as of `day` (not stored)."""
    return (model or current_model()).explain(compute(load_windows(session, [account], day)))[0]
