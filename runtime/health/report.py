"""`model report`: the model judged on the store's own held-out period, the days
after the cutoff it was trained with (issue #15). Nothing before the cutoff is
scored here, so the figures are the ones a customer would have seen.

Snapshot level (days whose horizon has ended): AUC of the model and of its plain
baseline, alert rate vs churn base rate. Account level: the first alert in the
period, and an alert is a true positive when the account churns within `max_lead`
days after it; an alert is counted for precision once its outcome is known (churn,
or `horizon` days passed). A model with no threshold raises no alerts: the report
says so instead of inventing one."""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Any

import numpy as np

from autopilot.runtime.health.asof import History, samples
from autopilot.runtime.health.baseline import Baseline
from autopilot.runtime.health.model import HealthModel, _auc
from autopilot.runtime.health.thresholds import GRID


def held_out(
    model: HealthModel, h: History, *, max_lead: int = 90, png: Path | None = None
) -> dict[str, Any]:
    """The report on the days after the model's cutoff; ValueError when there are none."""
    horizon = int(model.card.get("horizon_days", 45))
    cutoff = model.card.get("cutoff")
    if cutoff is None:
        raise ValueError(
            "model: its card has no cutoff (trained before time-honest training): retrain with "
            "`autopilot model train --cutoff DATE`, or report on the simulator with --simulator"
        )
    first = h.day_index(date.fromisoformat(cutoff)) + 1
    end = h.days - 1
    if first > end:
        raise ValueError(
            f"cutoff: the store has no history after the model's cutoff {cutoff} (last day "
            f"{h.date_of(end)}): nothing held out to report on"
        )
    x, y, acc, day = samples(h, first, end, horizon=horizon)
    risk = model.risk(x) if len(x) else np.empty(0)
    resolved = day <= end - horizon  # snapshot labels whose horizon has ended
    out: dict[str, Any] = {
        "model": model.version,
        "period": f"{h.date_of(first)} to {h.date_of(end)}",
        "cutoff": cutoff,
        "snapshots": int(resolved.sum()),
        "base_rate": round(float(y[resolved].mean()), 4) if resolved.any() else None,
        "auc": _round(_auc(y[resolved], risk[resolved])),
    }
    if "baseline" in model.card and resolved.any():
        base = Baseline.from_card(model.card["baseline"])
        out["baseline_auc"] = _round(_auc(y[resolved], base.risk(x[resolved])))
    churned = (h.churn_day >= first) & (h.churn_day <= end) & np.isin(np.arange(h.n), acc)
    out |= {"accounts": len(np.unique(acc)), "churned": int(churned.sum())}
    t = model.threshold
    if t is None:
        out |= {
            "threshold": None,
            "alerts": "none: no threshold met the card's rule, so this model raises no alerts",
        }
    else:
        out |= {"threshold": t} | _accounts(risk, acc, day, h, churned, t, end, horizon, max_lead)
        if resolved.any():
            out["alert_rate"] = round(float((risk[resolved] >= t).mean()), 4)
    curve = [
        {"threshold": g} | _accounts(risk, acc, day, h, churned, g, end, horizon, max_lead)
        for g in GRID
    ]
    out["curve"] = [
        {k: c[k] for k in ("threshold", "precision", "recall", "median_lead_days")}
        for c in curve[::5]
    ]
    if png is not None:
        out["png"] = str(_plot(curve, t, png, out["period"]))
    return out


def _accounts(
    risk: np.ndarray,
    acc: np.ndarray,
    day: np.ndarray,
    h: History,
    churned: np.ndarray,
    t: float,
    end: int,
    horizon: int,
    max_lead: int,
) -> dict[str, Any]:
    hit = risk >= t
    first_alert = np.full(h.n, h.days, dtype=np.int64)
    np.minimum.at(first_alert, acc[hit], day[hit].astype(np.int64))  # the earliest alert
    alerted = first_alert < h.days
    first_alert = np.where(alerted, first_alert, -1)
    lead = h.churn_day - first_alert
    tp = alerted & churned & (lead > 0) & (lead <= max_lead)
    known = alerted & (churned | (first_alert <= end - horizon))
    leads = lead[tp]
    return {
        "alerted": int(alerted.sum()),
        "true_positives": int(tp.sum()),
        "precision": round(float(tp.sum() / known.sum()), 3) if known.any() else None,
        "recall": round(float(tp.sum() / churned.sum()), 3) if churned.any() else None,
        "median_lead_days": float(np.median(leads)) if len(leads) else None,
        "p25_lead_days": float(np.percentile(leads, 25)) if len(leads) else None,
        "share_alerted_14d_before": round(float((leads >= 14).sum() / churned.sum()), 3)
        if churned.any()
        else None,
    }


def _plot(curve: list[dict[str, Any]], t: float | None, png: Path, period: str) -> Path:
    import matplotlib  # noqa: PLC0415 - loaded only when a picture is asked for

    matplotlib.use("Agg")  # no display: a file
    import matplotlib.pyplot as plt  # noqa: PLC0415

    pts = [c for c in curve if c["precision"] is not None and c["median_lead_days"] is not None]
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot([c["precision"] for c in pts], [c["median_lead_days"] for c in pts], marker=".")
    for c in pts:
        if t is not None and abs(c["threshold"] - t) < 1e-9:
            ax.annotate(f"threshold {t}", (c["precision"], c["median_lead_days"]))
    ax.set_xlabel("precision (accounts)")
    ax.set_ylabel("median lead time (days)")
    ax.set_title(f"lead time vs precision, held-out {period}", fontsize=9)
    png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png, dpi=100, bbox_inches="tight")
    plt.close(fig)
    return png


def _round(v: float) -> float | None:
    return round(v, 4) if np.isfinite(v) else None
