"""The shipped default holds the alert budget on every world of the simulator (issue
#15: the old one alerted on up to 23x the churn base rate off its own world), judged
through the live scorer's path; its threshold is the lowest that holds on every
world's validation period."""

from __future__ import annotations

from datetime import date

import numpy as np

from autopilot.runtime.devstack.simulator import simulate
from autopilot.runtime.devstack.worlds import WORLDS
from autopilot.runtime.health.default_model import choose_on_worlds
from autopilot.runtime.health.model import HealthModel, default_model_dir
from autopilot.runtime.health.thresholds import Rule
from autopilot.runtime.health.worlds import BUDGET, evaluate, history_of, merge

ACCOUNTS = 300  # per world: a few seconds, and enough churners on the 6 % world


def test_the_shipped_default_alerts_on_at_most_twice_the_base_rate_on_every_world() -> None:
    model = HealthModel.load(default_model_dir())
    rows = evaluate(model, n=ACCOUNTS)
    assert [r["world"] for r in rows] == list(WORLDS)
    for r in rows:
        assert r["alert_rate"] <= BUDGET * r["base_rate"], r
    # Not by alerting on nobody: where the decline is visible it still warns early.
    default = rows[0]
    assert default["recall"] >= 0.6 and default["median_lead_days"] >= 14, default


def test_the_shipped_card_says_its_worlds_rule_and_table() -> None:
    card = HealthModel.load(default_model_dir()).card
    assert card["threshold"]["rule"] == "budget:2x" and card["threshold"]["met"]
    assert set(card["threshold"]["per_world"]) == set(WORLDS) == set(card["worlds_training"]["worlds"])
    assert [r["world"] for r in card["worlds"]] == list(WORLDS)
    assert all(r["ratio"] <= BUDGET for r in card["worlds"])
    assert "## Worlds" in (default_model_dir() / "MODEL_CARD.md").read_text()


def _two_worlds():  # type: ignore[no-untyped-def]
    parts = [
        history_of(simulate(120, days=200, seed=s, world=WORLDS[w]), start=date(2026, 1, 1), prefix=w)
        for s, w in ((1, "default"), (2, "low_churn"))
    ]
    h = merge(parts)
    world_of = np.repeat([0, 1], [p.n for p in parts])
    first, last = 100, 160
    days = np.arange(first, last + 1)
    acc = np.repeat(np.arange(h.n), len(days))
    day = np.tile(days, h.n)
    alive = (h.churn_day[acc] < 0) | (h.churn_day[acc] > day)
    return h, world_of, acc[alive], day[alive], first, last


def test_the_threshold_is_the_lowest_that_holds_on_every_world() -> None:
    h, world_of, acc, day, first, last = _two_worlds()
    churns = (h.churn_day[acc] > 0) & (h.churn_day[acc] <= last)  # churn in the period
    # World 0 raises everyone to 0.5, world 1 to 0.3; churners sit at 0.9.
    risk = np.where(churns, 0.9, np.where(world_of[acc] == 0, 0.5, 0.3))
    block = choose_on_worlds(
        risk, acc, day, h, world_of, ["default", "low_churn"], Rule("budget", 2.0), first=first, last=last
    )
    assert block["met"] and block["threshold"] == 0.51
    for m in block["per_world"].values():
        assert m["alert_rate"] <= 2 * m["base_rate"]
    # Were world 0 quiet, world 1 alone would allow 0.31: the threshold answers to every world.
    single = choose_on_worlds(
        np.where(world_of[acc] == 1, risk, 0.9 * churns), acc, day, h, world_of,
        ["default", "low_churn"], Rule("budget", 2.0), first=first, last=last,
    )
    assert single["threshold"] == 0.31


def test_no_threshold_holding_on_every_world_is_said_plainly() -> None:
    h, world_of, acc, day, first, last = _two_worlds()
    risk = np.full(len(acc), 0.97)  # everyone always above the grid: every threshold floods
    block = choose_on_worlds(
        risk, acc, day, h, world_of, ["default", "low_churn"], Rule("budget", 2.0), first=first, last=last
    )
    assert not block["met"] and block["threshold"] is None and "no alerts" in block["note"]


def test_model_worlds_prints_every_world_with_its_alert_and_base_rate(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import json

    from tests.runtime.test_cli import run_cli

    env = {"AUTOPILOT_DATA_DIR": str(tmp_path)}
    r = run_cli("model", "worlds", "--accounts", "60", "--json", env=env)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["budget"] == BUDGET and [w["world"] for w in out["worlds"]] == list(WORLDS)
    for w in out["worlds"]:
        assert {"base_rate", "alert_rate", "ratio", "precision", "recall", "median_lead_days", "auc"} <= set(w)
    table = run_cli("model", "worlds", "--accounts", "60", env=env)
    assert table.returncode == 0 and all(name in table.stdout for name in WORLDS)
    bad = run_cli("model", "worlds", "--accounts", "5", "--json", env=env)
    assert bad.returncode == 2 and "accounts" in json.loads(bad.stdout)["error"]


def test_training_on_worlds_is_time_honest_and_holds_the_budget_on_each() -> None:
    from autopilot.runtime.health.default_model import train_on_worlds

    picked = [WORLDS["default"], WORLDS["low_churn"]]
    model = train_on_worlds(150, worlds=picked, days=540, validate_months=5)
    card = model.card
    assert card["split"]["method"] == "time-based" and "baseline_auc" in card["validation"]
    assert card["worlds_training"]["worlds"] == ["default", "low_churn"]
    assert "default, low_churn" in card["source"] and card["leakage_check"]["passed"]
    t = card["threshold"]
    assert t["met"] and card["alert_threshold"] == t["threshold"] == model.threshold
    assert set(t["per_world"]) == {"default", "low_churn"}
    for m in t["per_world"].values():
        assert m["alert_rate"] <= 2 * m["base_rate"]
