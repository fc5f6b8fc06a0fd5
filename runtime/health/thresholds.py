"""The alert threshold, chosen on the store's own validation period by an explicit
rule, with an explicit answer when no threshold meets it.

The old grid, run on the product's simulator, fell back to 0.95 when nothing reached
precision 0.6 and the card said nothing (issue #15). Rules:

- `budget:Kx`: alert on at most K × the churn base rate of snapshots (the lowest such
  threshold, i.e. the most recall within the budget);
- `precision:P`: the lowest threshold whose precision reaches P.

A rule met by no threshold (or only by one that alerts on nothing) gives
`threshold: None`: the model then raises no alerts, and the card says so."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

GRID = tuple(round(float(t), 3) for t in np.arange(0.01, 0.951, 0.01))


@dataclass(frozen=True)
class Rule:
    kind: str  # "budget" | "precision"
    value: float

    def __str__(self) -> str:
        return f"budget:{self.value:g}x" if self.kind == "budget" else f"precision:{self.value:g}"

    def describe(self) -> str:
        if self.kind == "budget":
            return f"alerts on at most {self.value:g}x the churn base rate"
        return f"precision at least {self.value:g}"


def parse_rule(text: str) -> Rule:
    """`budget:2x` or `precision:0.6`; ValueError naming the field otherwise."""
    kind, _, raw = text.strip().partition(":")
    try:
        value = float(raw.removesuffix("x"))
    except ValueError:
        value = float("nan")
    if kind == "budget" and value > 0:
        return Rule("budget", value)
    if kind == "precision" and 0 < value <= 1:
        return Rule("precision", value)
    raise ValueError(f"rule: {text!r} is not budget:<K>x (K > 0) or precision:<P> (0 < P <= 1)")


def at(risk: np.ndarray, y: np.ndarray, t: float) -> dict[str, float]:
    alert = risk >= t
    tp = int((alert & (y == 1)).sum())
    return {
        "threshold": t,
        "alert_rate": round(float(alert.mean()) if len(y) else 0.0, 4),
        "precision": round(tp / int(alert.sum()), 4) if alert.any() else 0.0,
        "recall": round(tp / int(y.sum()), 4) if y.sum() else 0.0,
    }


def choose(risk: np.ndarray, y: np.ndarray, rule: Rule) -> dict[str, Any]:
    """The card's `threshold` block: the rule, whether it is met, the threshold (None
    when none meets the rule) and its figures on the validation snapshots."""
    base = round(float(y.mean()) if len(y) else 0.0, 4)
    chosen = None
    for t in GRID:
        m = at(risk, y, t)
        if m["recall"] == 0:  # alerts on no churner: meets no rule worth the name
            break
        ok = (
            m["alert_rate"] <= rule.value * base
            if rule.kind == "budget"
            else m["precision"] >= rule.value
        )
        if ok:
            chosen = m
            break
    out: dict[str, Any] = {
        "rule": str(rule),
        "rule_text": rule.describe(),
        "base_rate": base,
        "met": chosen is not None,
        "threshold": chosen["threshold"] if chosen else None,
    }
    if chosen:
        out |= {k: chosen[k] for k in ("alert_rate", "precision", "recall")}
    else:
        out["note"] = (
            f"no threshold meets the rule ({rule.describe()}) on the validation period: "
            "this model raises no alerts"
        )
    return out
