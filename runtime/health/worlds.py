"""A model judged on each of the simulator's worlds, through the product's own path:
the window features (`features.compute`) and the model's `score`, as the live scorer
runs them every day, against the threshold on the model's card.

Alert rate, honestly: the share of accounts that get at least one alert in the
evaluation period (their churn risk at or above the threshold on any day they are
scored while still a customer, as the daily rescore would see it), against the churn
base rate: the share of accounts that churn in that same period. The product's bar is
an alert rate of at most 2x the base rate (issue #15)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import date
from typing import Any

import numpy as np

from autopilot.runtime.devstack.simulator import Portfolio, simulate
from autopilot.runtime.devstack.worlds import WORLDS, World
from autopilot.runtime.health.asof import History
from autopilot.runtime.health.baseline import Baseline
from autopilot.runtime.health.early_warning import report
from autopilot.runtime.health.features import WINDOW, compute
from autopilot.runtime.health.model import HealthModel, _auc

BUDGET = 2.0  # alerts on at most 2x the churn base rate
EVAL_DAYS = 300  # the simulator's default history: 211 scored days per account
EVAL_SEED = 1000  # evaluation worlds use seeds EVAL_SEED + i, apart from training's


def live_risk(model: HealthModel, p: Portfolio) -> np.ndarray:
    """Churn risk per account and day as the live scorer computes it (NaN before a full
    window and from the churn day on)."""
    out = np.full((p.n, p.days), np.nan)
    rows, cols, xs = [], [], []
    for day in range(WINDOW - 1, p.days):
        idx = np.flatnonzero((p.churn_day < 0) | (p.churn_day > day))
        rows.append(idx)
        cols.append(np.full(len(idx), day))
        xs.append(compute(p.windows(day, idx)))
    # Every day's rows in one call: the scorer's figures, without a call's overhead per day.
    out[np.concatenate(rows), np.concatenate(cols)] = model.score(np.vstack(xs))[1]
    return out


def evaluate_world(
    model: HealthModel, w: World, *, n: int, seed: int, horizon: int | None = None
) -> dict[str, Any]:
    """One world's row: accounts, base rate, alert rate and their ratio, precision,
    recall, median lead days, AUC (and the plain baseline's when the card has one)."""
    p = simulate(n, days=EVAL_DAYS, seed=seed, world=w)
    risk = live_risk(model, p)
    t = model.threshold
    row: dict[str, Any] = {"world": w.name, "about": w.about, "accounts": n, "seed": seed}
    churned = p.churn_day >= WINDOW
    row["base_rate"] = round(float(churned.mean()), 4)
    if t is None:
        row |= {"threshold": None, "alert_rate": 0.0, "ratio": 0.0}
    else:
        r = report(risk, p, t)
        alert_rate = r["alerted"] / n
        row |= {
            "threshold": t,
            "alert_rate": round(alert_rate, 4),
            "ratio": round(alert_rate / max(row["base_rate"], 1e-9), 2),
            "precision": r["precision"],
            "recall": r["recall"],
            "median_lead_days": r["median_lead_days"],
        }
    horizon = horizon or int(model.card.get("horizon_days", 45))
    day = np.arange(p.days)[None, :]
    label = (p.churn_day[:, None] > day) & (p.churn_day[:, None] - day <= horizon)
    scored = ~np.isnan(risk)
    row["auc"] = round(_auc(label[scored].astype(int), risk[scored]), 4)
    if "baseline" in model.card:
        base = Baseline.from_card(model.card["baseline"])
        xs, ys = [], []
        for d in range(WINDOW - 1, p.days, 7):  # weekly snapshots: the same AUC, cheaper
            idx = np.flatnonzero(scored[:, d])
            xs.append(compute(p.windows(d, idx)))
            ys.append(label[idx, d])
        row["baseline_auc"] = round(
            _auc(np.concatenate(ys).astype(int), base.risk(np.vstack(xs))), 4
        )
    row["meets_budget"] = t is None or row["alert_rate"] <= BUDGET * row["base_rate"]
    return row


def evaluate(
    model: HealthModel,
    *,
    n: int = 1000,
    worlds: Iterable[World] = WORLDS.values(),
    progress: Callable[[str], None] | None = None,
) -> list[dict[str, Any]]:
    """Every world's row, each on its own seeded evaluation portfolio."""
    rows = []
    for i, w in enumerate(worlds):
        if progress:
            progress(w.name)
        rows.append(evaluate_world(model, w, n=n, seed=EVAL_SEED + i))
    return rows


def history_of(p: Portfolio, *, start: date, prefix: str) -> History:
    """A simulated portfolio as the time-honest trainer reads a store: every day as it
    was known then (the renewal date of the plan on that day), each account a customer
    from day 0."""
    day = np.arange(p.days)[None, :]
    renewal = (
        np.repeat(p.renewal_day[:, None], p.days, axis=1)
        if p.plan_days is None
        else day + (p.renewal_day[:, None] - day) % p.plan_days
    )
    return History(
        ids=[f"{prefix}-{i + 1:05d}" for i in range(p.n)],
        start=start,
        days=p.days,
        signals={k: v.astype(float) for k, v in p.signals.items()},
        seats_used=p.seats_used.astype(float),
        nps=p.nps.astype(float),
        renewal_day=renewal.astype(float),
        seats_purchased=np.repeat(p.seats_purchased[:, None].astype(float), p.days, axis=1),
        start_day=np.zeros(p.n, dtype=np.int64),
        churn_day=p.churn_day.astype(np.int64),
        renewal_source="simulator",
    )


def merge(histories: list[History]) -> History:
    """Histories over the same days as one (accounts stacked)."""
    first = histories[0]
    assert all(h.start == first.start and h.days == first.days for h in histories)

    def cat(f: Callable[[History], np.ndarray]) -> np.ndarray:
        return np.concatenate([f(h) for h in histories])

    return History(
        ids=[i for h in histories for i in h.ids],
        start=first.start,
        days=first.days,
        signals={k: cat(lambda h, k=k: h.signals[k]) for k in first.signals},
        seats_used=cat(lambda h: h.seats_used),
        nps=cat(lambda h: h.nps),
        renewal_day=cat(lambda h: h.renewal_day),
        seats_purchased=cat(lambda h: h.seats_purchased),
        start_day=cat(lambda h: h.start_day),
        churn_day=cat(lambda h: h.churn_day),
        renewal_source=first.renewal_source,
    )
