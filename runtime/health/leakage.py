"""The leakage check: training fails when one feature dominates the model or the
model's validation AUC sits far above the plain baseline's.

On one customer dataset `days_to_renewal` (the churn date, in disguise) carried 60 %
of the gain and the card said AUC 0.97; the next period gave 0.67 (issue #15). Both
symptoms are cheap to see at training time; the result goes on the card either way."""

from __future__ import annotations

from typing import Any

import numpy as np

MAX_GAIN_SHARE = 0.5  # one feature carrying more of the model's total gain is suspect
MAX_AUC_GAP = 0.15  # validation AUC this far above the logistic baseline is suspect


class LeakageError(ValueError):
    def __init__(self, message: str, result: dict[str, Any]) -> None:
        super().__init__(message)
        self.result = result


def gain_shares(names: list[str], gains: np.ndarray) -> dict[str, float]:
    total = float(gains.sum()) or 1.0
    shares = {n: round(float(g) / total, 4) for n, g in zip(names, gains, strict=True)}
    return dict(sorted(shares.items(), key=lambda kv: -kv[1]))


def check(
    shares: dict[str, float],
    *,
    auc_model: float,
    auc_baseline: float,
    max_gain_share: float = MAX_GAIN_SHARE,
    max_auc_gap: float = MAX_AUC_GAP,
) -> dict[str, Any]:
    """The check's result for the card; `passed` False says why in `problems`."""
    problems = []
    top, share = next(iter(shares.items()))
    if share > max_gain_share:
        problems.append(
            f"feature {top} carries {share:.0%} of the model's gain (limit {max_gain_share:.0%}): "
            "check that it is known on the day it describes and is not the label in disguise"
        )
    gap = auc_model - auc_baseline
    if np.isfinite(gap) and gap > max_auc_gap:
        problems.append(
            f"validation AUC {auc_model:.3f} is {gap:.3f} above the logistic baseline's "
            f"{auc_baseline:.3f} (limit {max_auc_gap}): a feature probably carries the label"
        )
    return {
        "passed": not problems,
        "problems": problems,
        "top_feature": top,
        "top_gain_share": share,
        "auc_gap": round(float(gap), 4) if np.isfinite(gap) else None,
        "max_gain_share": max_gain_share,
        "max_auc_gap": max_auc_gap,
    }
