"""The early-warning report: score held-out simulated accounts every day, and
measure how long before churn the first alert came (lead time), and its precision
and recall at the account level.

An alert is a true positive when the account churns within `max_lead` days after
its first alert; an earlier or churn-free alert is a false alarm."""

from __future__ import annotations

from typing import Any

import numpy as np

from autopilot.runtime.devstack.simulator import Portfolio
from autopilot.runtime.health.features import WINDOW, compute
from autopilot.runtime.health.model import HealthModel


def risk_matrix(model: HealthModel, p: Portfolio) -> np.ndarray:
    """Risk per account and day; NaN before a full window and after churn."""
    out = np.full((p.n, p.days), np.nan)
    for day in range(WINDOW - 1, p.days):
        idx = np.flatnonzero((p.churn_day < 0) | (p.churn_day > day))
        out[idx, day] = model.risk(compute(p.windows(day, idx)))
    return out


def report(
    risk: np.ndarray, p: Portfolio, threshold: float, *, max_lead: int = 90
) -> dict[str, Any]:
    over = np.nan_to_num(risk, nan=0.0) >= threshold
    alerted = over.any(axis=1)
    first = np.where(alerted, over.argmax(axis=1), -1)
    churned = p.churn_day >= WINDOW  # churn we could have seen coming with a full window
    lead = p.churn_day - first
    tp = alerted & churned & (lead > 0) & (lead <= max_lead)
    leads = lead[tp]
    return {
        "threshold": round(float(threshold), 3),
        "accounts": int(p.n),
        "churned": int(churned.sum()),
        "alerted": int(alerted.sum()),
        "true_positives": int(tp.sum()),
        "precision": round(float(tp.sum() / max(alerted.sum(), 1)), 3),
        "recall": round(float(tp.sum() / max(churned.sum(), 1)), 3),
        "median_lead_days": float(np.median(leads)) if len(leads) else 0.0,
        "p25_lead_days": float(np.percentile(leads, 25)) if len(leads) else 0.0,
        "share_alerted_14d_before": round(float((leads >= 14).sum() / max(churned.sum(), 1)), 3),
    }


def choose_threshold(risk: np.ndarray, p: Portfolio, *, min_precision: float = 0.6) -> float:
    """The lowest threshold whose precision reaches `min_precision` (best recall)."""
    for t in np.round(np.arange(0.2, 0.96, 0.025), 3):
        if report(risk, p, float(t))["precision"] >= min_precision:
            return float(t)
    return 0.95
