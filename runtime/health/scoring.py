"""Scoring: fold events into daily rollups, compute window features and Health 2.0
for one account (incremental, on each event) or for the whole portfolio (full
rescore), store the explained score and raise an early-warning alert when the churn
risk crosses the model's threshold."""

from __future__ import annotations

import asyncio
import logging
import threading
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path

import numpy as np
from sqlalchemy import String, cast, delete, insert
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

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


def load_windows(session: Session, accounts: list[Account], today: date) -> Windows:
    """The last WINDOW days of rollups of `accounts` (one query), as arrays."""
    index = {a.id: i for i, a in enumerate(accounts)}
    first = today - timedelta(days=WINDOW - 1)
    signals = {k: np.zeros((len(accounts), WINDOW)) for k in SIGNALS}
    # The day as ISO text (the same on SQLite and Postgres): parsed in one numpy call.
    q = select(
        AccountDay.account_id,
        cast(AccountDay.day, String),
        *(getattr(AccountDay, c) for c in SIGNALS),
    ).where(AccountDay.day >= first, AccountDay.day <= today)
    if len(accounts) < 500:
        q = q.where(col(AccountDay.account_id).in_(list(index)))
    rows = session.connection().execute(q).all()
    if rows:
        columns = list(zip(*rows, strict=True))
        ai = np.array([index.get(a, -1) for a in columns[0]], dtype=np.int64)
        di = (
            np.array(columns[1], dtype="datetime64[D]") - np.datetime64(first.isoformat(), "D")
        ).astype(np.int64)
        keep = ai >= 0
        for j, name in enumerate(SIGNALS):
            signals[name][ai[keep], di[keep]] = np.asarray(columns[2 + j], dtype=float)[keep]
    return _windows(accounts, signals, today)


def _windows(accounts: list[Account], signals: dict[str, np.ndarray], today: date) -> Windows:
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
    accounts: list[Account],
    *,
    today: date,
    now: datetime | None = None,
    model: HealthModel | None = None,
    explain: bool = True,
) -> list[AccountScore]:
    """Score `accounts` and store the results (replacing their previous scores, in
    bulk); an alert on each upward crossing of the model's threshold."""
    model = model or current_model()
    now = now or datetime.combine(
        today, datetime.now(UTC).timetz()
    )  # scored_at's date is the day scored
    ids = [a.id for a in accounts]
    x = compute(load_windows(session, accounts, today))
    previous: dict[str, float] = {}
    for chunk in _chunks(ids):
        previous.update(
            session.connection()
            .execute(
                select(AccountScore.account_id, AccountScore.risk).where(
                    col(AccountScore.account_id).in_(chunk)
                )
            )
            .all()
        )
        session.connection().execute(
            delete(AccountScore).where(col(AccountScore.account_id).in_(chunk))
        )
    # The full rescore's fast path stores risk and health; factors are computed on demand.
    explanations: list[Explanation | None] = (
        list(model.explain(x)) if explain else [None] * len(accounts)
    )
    healths, risks = model.score(x) if not explain else (None, None)
    rows, alerts = [], []
    threshold = model.threshold
    if threshold is None and accounts and model.version not in _silent:
        _silent.add(model.version)  # said once per model and process, not on every event
        log.warning(
            "model %s has no alert threshold (%s): scoring raises no alerts",
            model.version,
            model.card.get("threshold", {}).get("note", "no threshold meets the rule"),
        )
    for i, account in enumerate(accounts):
        e = explanations[i]
        risk = e.risk if e else float(risks[i])  # type: ignore[index]
        health = e.health if e else float(healths[i])  # type: ignore[index]
        rows.append(
            AccountScore(
                account_id=account.id,
                health=health,
                risk=risk,
                baseline=e.baseline if e else 0.0,
                factors=[f.model_dump() for f in e.factors] if e else [],
                features=dict(zip(FEATURES, map(float, x[i]), strict=True)),
                model_version=model.version,
                scored_at=now,
            )
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
                    model_version=model.version,
                    at=now,
                )
            )
    if rows:
        session.connection().execute(insert(AccountScore), [r.model_dump() for r in rows])
    session.add_all(alerts)
    return rows


def _chunks(ids: list[str], size: int = 5000) -> list[list[str]]:
    return [ids[i : i + size] for i in range(0, len(ids), size)]


def rescore_all(
    db: Engine, *, today: date, org_id: str | None = None, model: HealthModel | None = None
) -> int:
    """The full rescore: every active account, one pass, stored in one transaction."""
    with Session(db) as session:
        q = select(Account).where(Account.status == "active")
        if org_id:
            q = q.where(Account.org_id == org_id)
        accounts = list(session.exec(q))
        score(session, accounts, today=today, model=model, explain=False)
        session.commit()
    return len(accounts)


def rescore_stale(db: Engine, *, today: date) -> int:
    """Rescore every active account whose stored score is from before `today` (or that
    has none): health moves with time even when no event arrives (windows slide, the
    renewal comes closer). Returns the accounts rescored."""
    with Session(db) as session:
        fresh = select(AccountScore.account_id).where(
            col(AccountScore.scored_at) >= datetime.combine(today, time.min, UTC)
        )
        accounts = list(
            session.exec(
                select(Account).where(Account.status == "active", col(Account.id).not_in(fresh))
            )
        )
        for chunk in range(0, len(accounts), 5000):
            score(session, accounts[chunk : chunk + 5000], today=today, explain=False)
        session.commit()
    return len(accounts)


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
