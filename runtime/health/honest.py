"""Time-honest training of Health 2.0 on a store: features as of each day, a cutoff,
a time-based validation split, a logistic baseline beside the model, a leakage check
that fails training, and the alert threshold chosen on the store's own validation
period by an explicit rule (issue #15). Everything it decided goes on the card."""

from __future__ import annotations

from datetime import date
from typing import Any

import numpy as np
from sqlalchemy.engine import Engine

from autopilot.runtime.health import baseline as lr
from autopilot.runtime.health.asof import History, load_history, samples
from autopilot.runtime.health.features import FEATURES, WINDOW
from autopilot.runtime.health.leakage import LeakageError, check, gain_shares
from autopilot.runtime.health.model import HealthModel, _auc, train
from autopilot.runtime.health.split import plan_split
from autopilot.runtime.health.thresholds import Rule, choose

HORIZON = 45
DEFAULT_RULE = Rule("budget", 2.0)  # alerts on at most 2x the churn base rate
TRAIN_EVERY = 7  # days between training snapshots of one account (they overlap heavily)


def train_time_honest(
    db: Engine | None,
    *,
    cutoff: date | None = None,
    validate_months: int = 3,
    rule: Rule = DEFAULT_RULE,
    org_id: str | None = None,
    max_gain_share: float = 0.5,
    max_auc_gap: float = 0.15,
    history: History | None = None,
    source: str | None = None,
) -> HealthModel:
    """The model, its card complete; LeakageError (naming the feature) when the check
    fails, ValueError naming the field when the store cannot give a split. `history`
    and `source` stand in for the store (the simulator's worlds are trained so)."""
    if history is None:
        assert db is not None, "a store or a history to train on"
        history = load_history(db, org_id=org_id)
    h = history
    where = source or (f"store {db.url.render_as_string(hide_password=True)}" if db else "history")
    split = plan_split(
        history_start=h.start,
        history_end=h.date_of(h.days - 1),
        cutoff=cutoff,
        validate_months=validate_months,
        horizon=HORIZON,
        window=WINDOW,
    )
    x, y, _, _ = samples(
        h,
        h.day_index(split.train_first),
        h.day_index(split.train_last),
        horizon=HORIZON,
        every=TRAIN_EVERY,
    )
    xv, yv, _, _ = samples(
        h, h.day_index(split.validate_first), h.day_index(split.validate_last), horizon=HORIZON
    )
    for name, labels in (("training", y), ("validation", yv)):
        if not len(labels) or labels.sum() == 0 or labels.sum() == len(labels):
            raise ValueError(
                f"cutoff: the {name} period ({split.as_card()}) has {int(labels.sum())} churn "
                f"snapshot(s) of {len(labels)}: both outcomes are needed"
            )
    model = train(
        x,
        y,
        x_val=xv,
        y_val=yv,
        horizon=HORIZON,
        training_window=f"{split.train_first} to {split.train_last} (snapshots)",
        source=f"{where}, {h.n} accounts "
        f"({int((h.churn_day >= 0).sum())} churned), cutoff {split.cutoff}",
    )
    base = lr.fit(x, y)
    p_model, p_base = model.risk(xv), base.risk(xv)
    auc_model, auc_base = _auc(yv, p_model), _auc(yv, p_base)
    shares = gain_shares(
        list(FEATURES), np.asarray(model.booster.feature_importance("gain"), dtype=float)
    )
    leak = check(
        shares,
        auc_model=auc_model,
        auc_baseline=auc_base,
        max_gain_share=max_gain_share,
        max_auc_gap=max_auc_gap,
    )
    threshold = choose(p_model, yv, rule)
    card: dict[str, Any] = model.card
    card["validation"] |= {
        "auc": round(auc_model, 4),
        "baseline_auc": round(auc_base, 4),
        "positives": int(yv.sum()),
        "period": f"{split.validate_first} to {split.validate_last}",
    }
    card |= {
        "cutoff": str(split.cutoff),
        "split": split.as_card() | {"validate_months": validate_months, "method": "time-based"},
        "baseline": {"algorithm": "logistic regression (L2, same windows)"} | base.to_card(),
        "top_gain_shares": dict(list(shares.items())[:5]),
        "leakage_check": leak,
        "threshold": threshold,
        "alert_threshold": threshold["threshold"],
        "renewal_date_source": {
            "subscriptions": "subscriptions history, as of each day",
            "contracts": "contract history, as of each day",
            "unknown": "unknown for past days (no subscription or contract history): "
            "days_to_renewal left missing",
            "simulator": "the simulated plan's renewal dates, as known on each day",
        }[h.renewal_source],
        "limits": card["limits"]
        + (
            ""
            if h.renewal_source in ("subscriptions", "simulator")
            else "; seats purchased is the current snapshot value"
        ),
    }
    if not leak["passed"]:
        raise LeakageError("leakage check failed: " + "; ".join(leak["problems"]), leak)
    return model
