"""Renewal forecast accuracy: the forecasts the Renewal agent wrote, against the
renewals that happened (issue #15, part 7; the product's KPI is MAPE ≤ 15 %).

The Renewal agent writes its forecast to the CRM with `crm_write_forecast`; the
store keeps each executed action (`ActionRecord`, its payload holds the arguments),
so the forecasts are read from there: no new table. A forecast made on day f is
about the renewal known on f (the contract covering f, else the account's renewal
date when still ahead of f). It is resolved when the account churned after f
(actual ARR 0, not renewed) or that renewal date has passed with the account still
a customer (renewed; actual ARR is the account's ARR now, the best the store holds
until the subscriptions history gives ARR as of a day). The last forecast before
each renewal is the one judged."""

from __future__ import annotations

from datetime import date
from typing import Any

import numpy as np
from sqlmodel import Session, col, select

from autopilot.runtime.store.accounts import Account
from autopilot.runtime.store.actions import ActionRecord
from autopilot.runtime.store.customer import Contract

KPI_MAPE = 0.15
TOOL = "crm_write_forecast"


def forecast_accuracy(
    session: Session, *, today: date, org_id: str | None = None
) -> dict[str, Any]:
    actions = session.exec(
        select(ActionRecord).where(ActionRecord.tool == TOOL, ActionRecord.status == "executed")
    ).all()
    ids = {a.account_id for a in actions}
    accounts = {
        a.id: a
        for a in session.exec(select(Account).where(col(Account.id).in_(list(ids)))).all()
        if not org_id or a.org_id == org_id
    }
    contracts: dict[str, list[Contract]] = {}
    for c in session.exec(select(Contract).where(col(Contract.account_id).in_(list(ids)))).all():
        contracts.setdefault(c.account_id, []).append(c)
    latest: dict[tuple[str, date], tuple[date, float, float]] = {}
    for r in sorted(actions, key=lambda r: r.created_at):
        account = accounts.get(r.account_id)
        args = r.payload.get("args", {})
        if account is None or "forecast_arr" not in args:
            continue
        made = r.created_at.date()
        renewal = _renewal_known_on(account, contracts.get(account.id, []), made)
        if renewal is None and account.churned_at is not None and account.churned_at > made:
            renewal = account.churned_at  # only the key: this forecast resolves as a churn
        if renewal is None:
            continue
        latest[(account.id, renewal)] = (
            made,
            float(args["renewal_probability"]),
            float(args["forecast_arr"]),
        )
    resolved = []
    for (aid, renewal), (made, prob, arr) in latest.items():
        a = accounts[aid]
        if a.churned_at is not None and made < a.churned_at <= min(today, renewal):
            resolved.append((prob, arr, 0.0, 0.0))
        elif renewal <= today and (a.churned_at is None or a.churned_at > renewal):
            resolved.append((prob, arr, 1.0, float(a.arr)))
    out: dict[str, Any] = {
        "forecasts": len(latest),
        "resolved": len(resolved),
        "kpi_mape": KPI_MAPE,
    }
    if not resolved:
        note = (
            "no forecast has reached its renewal yet"
            if latest
            else "no renewal forecasts written yet"
        )
        return out | {"mape": None, "note": note}
    p, f, renewed, actual = (np.array(v, dtype=float) for v in zip(*resolved, strict=True))
    kept = actual > 0
    mape = float(np.mean(np.abs(f[kept] - actual[kept]) / actual[kept])) if kept.any() else None
    bins = []
    which = np.minimum(np.floor(p * 5 + 1e-9), 4).astype(int)  # fifths of probability
    for b in range(5):
        m = which == b
        if m.any():
            bins.append(
                {
                    "probability": f"{b / 5:.1f}-{(b + 1) / 5:.1f}",
                    "forecasts": int(m.sum()),
                    "mean_forecast": round(float(p[m].mean()), 3),
                    "renewed_share": round(float(renewed[m].mean()), 3),
                }
            )
    return out | {
        "mape": None if mape is None else round(mape, 4),
        "mape_meets_kpi": None if mape is None else round(mape, 4) <= KPI_MAPE,
        "wape_with_churn": round(float(np.abs(f - actual).sum() / max(actual.sum(), 1e-9)), 4),
        "brier": round(float(np.mean((p - renewed) ** 2)), 4),
        "calibration": bins,
    }


def _renewal_known_on(account: Account, contracts: list[Contract], day: date) -> date | None:
    covering = [c for c in contracts if c.start_date <= day <= c.renewal_date]
    if covering:
        return max(covering, key=lambda c: c.start_date).renewal_date
    # No contract: the snapshot's renewal date, only when it was still ahead on that
    # day and is not the churn date stamped on a churned account.
    if account.renewal_date > day and account.renewal_date != account.churned_at:
        return account.renewal_date
    return None
