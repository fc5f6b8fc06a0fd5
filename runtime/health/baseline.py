"""The plain baseline: an L2 logistic regression on the same windows as the model.

Trained beside the LightGBM model, it tells whether the model's lift is plausible: a
gradient-boosted model far above a linear one on these few smooth features usually
means one feature carries the label, not that the model is clever (issue #15). It is
a small numpy Newton solver (scikit-learn is not a dependency); missing values are
imputed with the training medians, features standardised."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass
class Baseline:
    median: np.ndarray
    mean: np.ndarray
    scale: np.ndarray
    coef: np.ndarray  # intercept first

    def _design(self, x: np.ndarray) -> np.ndarray:
        x = np.where(np.isnan(x), self.median, x)
        z = (x - self.mean) / self.scale
        return np.column_stack([np.ones(len(z)), z])

    def risk(self, x: np.ndarray) -> np.ndarray:
        return 1 / (1 + np.exp(-np.clip(self._design(x) @ self.coef, -30, 30)))

    def to_card(self) -> dict[str, Any]:
        return {
            k: [round(float(v), 8) for v in getattr(self, k)]
            for k in ("median", "mean", "scale", "coef")
        }

    @classmethod
    def from_card(cls, d: dict[str, Any]) -> Baseline:
        return cls(**{k: np.array(d[k], dtype=float) for k in ("median", "mean", "scale", "coef")})


def fit(x: np.ndarray, y: np.ndarray, *, l2: float = 1.0, steps: int = 25) -> Baseline:
    median = np.nanmedian(np.where(np.isnan(x).all(axis=0), 0.0, x), axis=0)
    median = np.where(np.isnan(median), 0.0, median)
    filled = np.where(np.isnan(x), median, x)
    mean, scale = filled.mean(axis=0), filled.std(axis=0)
    scale = np.where(scale > 1e-12, scale, 1.0)
    b = Baseline(median, mean, scale, np.zeros(x.shape[1] + 1))
    a = b._design(x)
    penalty = np.full(a.shape[1], l2)
    penalty[0] = 0.0  # the intercept is not shrunk
    for _ in range(steps):  # Newton's method: converges in a handful of steps
        p = 1 / (1 + np.exp(-np.clip(a @ b.coef, -30, 30)))
        grad = a.T @ (p - y) + penalty * b.coef
        hess = (a * (p * (1 - p))[:, None]).T @ a + np.diag(penalty + 1e-9)
        step = np.linalg.solve(hess, grad)
        b.coef = b.coef - step
        if np.abs(step).max() < 1e-8:
            break
    return b
