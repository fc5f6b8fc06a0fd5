"""The alert threshold comes from the store's validation period by an explicit rule;
when no threshold meets it the card says so and scoring raises no alerts (issue #15)."""

from __future__ import annotations

import copy
from datetime import timedelta
from pathlib import Path

import lightgbm as lgb
import numpy as np
import pytest
from sqlalchemy import delete
from sqlmodel import Session, select

from autopilot.runtime.health.honest import train_time_honest
from autopilot.runtime.health.model import HealthModel
from autopilot.runtime.health.scoring import score
from autopilot.runtime.health.thresholds import GRID, Rule, at, choose, parse_rule
from autopilot.runtime.store.accounts import Account
from autopilot.runtime.store.customer import AccountScore, RiskAlert
from tests.runtime.health.honest_store import START, make_store


def test_rules_parse_and_bad_ones_name_the_field() -> None:
    assert parse_rule("budget:2x") == Rule("budget", 2.0)
    assert parse_rule("precision:0.6") == Rule("precision", 0.6)
    for bad in ("budget:-1x", "precision:1.5", "recall:0.5", "budget:lots"):
        with pytest.raises(ValueError, match="rule"):
            parse_rule(bad)


def test_budget_rule_takes_the_lowest_threshold_within_the_budget() -> None:
    rng = np.random.default_rng(0)
    y = (rng.random(5000) < 0.1).astype(int)
    risk = np.clip(0.1 + 0.3 * y + rng.normal(0, 0.15, len(y)), 0, 1)
    t = choose(risk, y, Rule("budget", 2.0))
    assert t["met"] and t["alert_rate"] <= 2 * t["base_rate"]
    lower = [g for g in GRID if g < t["threshold"]]
    assert lower and at(risk, y, lower[-1])["alert_rate"] > 2 * t["base_rate"]  # the lowest
    p = choose(risk, y, Rule("precision", 0.6))
    assert p["met"] and p["precision"] >= 0.6


def test_a_rule_no_threshold_meets_is_said_and_scoring_raises_no_alerts(tmp_path: Path) -> None:
    db = make_store(tmp_path / "a.db")
    model = train_time_honest(db, rule=parse_rule("precision:0.99"))
    t = model.card["threshold"]
    assert t["met"] is False and t["threshold"] is None and model.card["alert_threshold"] is None
    assert "no threshold meets the rule" in t["note"]
    folder = model.save(tmp_path / "m")
    assert "NOT MET" in (folder / "MODEL_CARD.md").read_text()
    assert HealthModel.load(folder).threshold is None
    today = START + timedelta(days=329)
    with Session(db) as s:
        accounts = list(s.exec(select(Account).where(Account.status == "active")))
        score(s, accounts, today=today, model=model, explain=False)
        s.commit()
        assert s.exec(select(RiskAlert)).all() == []
        # The same model with a low threshold would alert: the silence is the rule's.
        low = HealthModel(
            booster=lgb.Booster(model_str=model.booster.model_to_string()),
            card=copy.deepcopy(model.card) | {"alert_threshold": 0.01},
        )
        s.execute(delete(AccountScore))  # alerts are raised on crossing: start afresh
        score(s, accounts, today=today, model=low, explain=False)
        s.commit()
        assert s.exec(select(RiskAlert)).all() != []
    db.dispose()
