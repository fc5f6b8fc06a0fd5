"""Health 2.0: a LightGBM churn model over the window features, explained exactly.

LightGBM's `pred_contrib` gives TreeSHAP contributions in log-odds that sum, with
the bias, to the model's raw score. The health score is a linear map of that raw
score, 50 − 10·logit(churn risk), so each factor's contribution to the score is
−10 × its SHAP value, and baseline + contributions = the score, exactly (a score
bounded to 0–100 shows the cut as one more factor). The churn risk is the model's
probability of churn within its horizon."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path
from typing import Any

import lightgbm as lgb
import numpy as np
from pydantic import BaseModel

from autopilot.runtime.contracts.hashing import sha256_hex
from autopilot.runtime.health.features import FEATURES, LABELS

SCALE = 10.0  # health points per unit of log-odds
MIDPOINT = 50.0  # the health of an account at even odds
PARAMS = {
    "objective": "binary",
    "learning_rate": 0.05,
    "num_leaves": 15,
    "min_data_in_leaf": 50,
    "feature_fraction": 0.9,
    "bagging_fraction": 0.8,
    "bagging_freq": 1,
    "verbose": -1,
    "seed": 7,
    "num_threads": 2,
    "deterministic": True,
}


def health_of(margin: float) -> float:
    """The one health figure: 50 − 10·(log-odds of churn), bounded to 0–100, to the cent."""
    return round(min(100.0, max(0.0, MIDPOINT - SCALE * margin)), 2)


def risk_of(margin: float) -> float:
    return round(float(1 / (1 + np.exp(-margin))), 4)


class Factor(BaseModel):
    feature: str
    label: str
    value: float
    contribution: float  # health points, signed


class Explanation(BaseModel):
    health: float  # 0-100
    risk: float  # probability of churn within the model's horizon
    baseline: float  # the score of an average account (the model's bias)
    factors: list[Factor]  # every feature; baseline + Σ contributions = health
    model_version: str


@dataclass
class HealthModel:
    booster: lgb.Booster
    card: dict[str, Any]

    @property
    def version(self) -> str:
        return str(self.card["version"])

    @property
    def threshold(self) -> float | None:
        """The alert threshold; None when no threshold met the card's rule (the model
        then raises no alerts, and says so, rather than falling back to a number)."""
        t = self.card.get("alert_threshold")
        return None if t is None else float(t)

    def risk(self, x: np.ndarray) -> np.ndarray:
        return np.asarray(self.booster.predict(x), dtype=float)

    def score(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(health, risk) per row, without the explanation: the full rescore's fast path.
        Same figures as `explain` to the cent: both come from `health_of` and `risk_of`."""
        margin = np.asarray(self.booster.predict(x, raw_score=True), dtype=float)
        return np.array([health_of(m) for m in margin]), np.array([risk_of(m) for m in margin])

    def explain(self, x: np.ndarray) -> list[Explanation]:
        contrib = np.asarray(self.booster.predict(x, pred_contrib=True), dtype=float)
        out = []
        for row, c in zip(x, contrib, strict=True):
            margin = float(c.sum())
            health = health_of(margin)
            baseline = round(MIDPOINT - SCALE * c[-1], 2)
            factors = [
                Factor(
                    feature=f,
                    label=LABELS[f],
                    value=round(float(v), 4),
                    contribution=round(-SCALE * p, 2),
                )
                for f, v, p in zip(FEATURES, row, c[:-1], strict=True)
            ]
            raw = MIDPOINT - SCALE * margin
            if round(raw, 2) != health:  # bounded to 0-100: the cut is a factor of its own
                factors.append(
                    Factor(
                        feature="bound",
                        label="score bounded to 0-100",
                        value=0.0,
                        contribution=round(health - raw, 2),
                    )
                )
            factors.sort(key=lambda f: -abs(f.contribution))
            # Rounding each factor to the cent leaves a residue of a few cents: the largest
            # factor carries it, so baseline + contributions is the health exactly.
            residue = round(health - baseline - sum(f.contribution for f in factors), 2)
            if residue and factors:
                factors[0] = factors[0].model_copy(
                    update={"contribution": round(factors[0].contribution + residue, 2)}
                )
            out.append(
                Explanation(
                    health=health,
                    risk=risk_of(margin),
                    baseline=baseline,
                    factors=factors,
                    model_version=self.version,
                )
            )
        return out

    def save(self, folder: Path) -> Path:
        folder.mkdir(parents=True, exist_ok=True)
        self.booster.save_model(str(folder / "model.txt"))
        (folder / "card.json").write_text(json.dumps(self.card, indent=2))
        (folder / "MODEL_CARD.md").write_text(model_card_markdown(self.card))
        return folder

    @classmethod
    def load(cls, folder: Path) -> HealthModel:
        card = json.loads((folder / "card.json").read_text())
        return cls(booster=lgb.Booster(model_file=str(folder / "model.txt")), card=card)


def default_model_dir() -> Path:
    return Path(str(resources.files("autopilot.runtime.health") / "models" / "default"))


def train(
    x: np.ndarray,
    y: np.ndarray,
    *,
    x_val: np.ndarray,
    y_val: np.ndarray,
    horizon: int,
    source: str,
    training_window: str,
    rounds: int = 250,
) -> HealthModel:
    booster = lgb.train(
        PARAMS, lgb.Dataset(x, y, feature_name=list(FEATURES)), num_boost_round=rounds
    )
    p = np.asarray(booster.predict(x_val), dtype=float)
    version = f"health-{datetime.now(UTC):%Y%m%d}-{sha256_hex(booster.model_to_string())[:8]}"
    card = {
        "version": version,
        "trained_at": datetime.now(UTC).isoformat(),
        "algorithm": "LightGBM binary (TreeSHAP)",
        "features": [{"name": f, "meaning": LABELS[f]} for f in FEATURES],
        "horizon_days": horizon,
        "label": f"churn within {horizon} days of the snapshot",
        "source": source,
        "training_window": training_window,
        "samples": len(y),
        "positives": int(y.sum()),
        "validation": {
            "samples": len(y_val),
            "auc": round(_auc(y_val, p), 4),
            "brier": round(float(np.mean((p - y_val) ** 2)), 4),
        },
        "alert_threshold": 0.5,
        "score": f"health = {MIDPOINT:g} - {SCALE:g} * logit(risk), bounded 0-100",
        "intended_use": "rank accounts by churn risk and explain the drivers, so that agents and CSMs act early; "
        "a human reviews any significant decision it informs",
        "limits": "trained on the stated source; simulated data does not carry a real portfolio's seasonality, "
        "contract mix or data quality; retrain on your store's history (`autopilot model train`) and "
        "re-check the early-warning report before relying on it; not for decisions about individuals",
    }
    return HealthModel(booster=booster, card=card)


def _auc(y: np.ndarray, p: np.ndarray) -> float:
    order = np.argsort(p)
    ranks = np.empty(len(p))
    ranks[order] = np.arange(1, len(p) + 1)
    pos = y == 1
    n_pos, n_neg = pos.sum(), (~pos).sum()
    if not n_pos or not n_neg:
        return float("nan")
    return float((ranks[pos].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def model_card_markdown(card: dict[str, Any]) -> str:
    lines = [
        f"# Model card: {card['version']}",
        "",
        f"- Algorithm: {card['algorithm']}",
        f"- Trained: {card['trained_at']}",
        f"- Source: {card['source']}",
        f"- Training window: {card['training_window']}",
        f"- Label: {card['label']}",
        f"- Samples: {card['samples']} ({card['positives']} positive)",
        (
            f"- Validation: AUC {card['validation']['auc']}, Brier {card['validation']['brier']} "
            f"on {card['validation']['samples']} samples"
        ),
        f"- Score: {card['score']}",
        f"- Alert threshold (churn risk): {card['alert_threshold']}",
    ]
    lines += _honest_lines(card)
    if ew := card.get("early_warning"):
        lines.append(
            f"- Early warning on held-out accounts ({ew.get('source', 'simulator')}): median lead time {ew['median_lead_days']} days, "
            f"precision {ew['precision']}, recall {ew['recall']} ({ew['accounts']} accounts)"
        )
    lines += [
        "",
        "## Features",
        *[f"- `{f['name']}`: {f['meaning']}" for f in card["features"]],
        "",
        "## Intended use",
        card["intended_use"],
        "",
        "## Limits",
        card["limits"],
        "",
    ]
    return "\n".join(lines)


def _honest_lines(card: dict[str, Any]) -> list[str]:
    """The time-honest training's figures (cards trained before it have none)."""
    out = []
    if split := card.get("split"):
        out.append(
            f"- Cutoff {card['cutoff']}; time-based split: training snapshots {split['train_first']} to "
            f"{split['train_last']}, validation {split['validate_first']} to {split['validate_last']}"
        )
    if "baseline_auc" in card.get("validation", {}):
        out.append(
            f"- Validation AUC: model {card['validation']['auc']}, "
            f"plain baseline (logistic regression) {card['validation']['baseline_auc']}"
        )
    if shares := card.get("top_gain_shares"):
        out.append(
            "- Top feature gain shares: " + ", ".join(f"{k} {v:.0%}" for k, v in shares.items())
        )
    if leak := card.get("leakage_check"):
        out.append(
            "- Leakage check: "
            + ("passed" if leak["passed"] else "FAILED: " + "; ".join(leak["problems"]))
        )
    if t := card.get("threshold"):
        if t["met"]:
            out.append(
                f"- Threshold rule ({t['rule_text']}): met at {t['threshold']} on the validation period "
                f"(precision {t['precision']}, recall {t['recall']}, alert rate {t['alert_rate']} "
                f"vs base rate {t['base_rate']})"
            )
        else:
            out.append(f"- Threshold rule ({t['rule_text']}): NOT MET. {t['note']}")
    if src := card.get("renewal_date_source"):
        out.append(f"- Renewal date: {src}")
    return out
