"""Health 2.0: exact explanations, incremental and full scoring agree, early warning
on held-out simulated accounts, training from a store's history."""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pytest
from sqlmodel import Session, select

from autopilot.runtime.health.early_warning import report, risk_matrix
from autopilot.runtime.devstack.simulator import simulate
from autopilot.runtime.health.features import FEATURES, compute
from autopilot.runtime.health.model import HealthModel
from autopilot.runtime.accounts.fold import on_event
from autopilot.runtime.health.scoring import current, current_model, explain_at, load_windows, rescore_all
from autopilot.runtime.health.honest import train_time_honest
from autopilot.runtime.health.training import history_from_store, write_history
from autopilot.runtime.devstack.seed import seed_portfolio
from autopilot.runtime.store.accounts import Account
from autopilot.runtime.store.customer import AccountScore, RiskAlert
from autopilot.runtime.store.db import make_engine

TODAY = date(2026, 11, 24)


@pytest.fixture
def db(tmp_path: Path):  # type: ignore[no-untyped-def]
    engine = make_engine(f"sqlite:///{tmp_path / 'a.db'}")
    seed_portfolio(engine, n=60, today=TODAY)
    yield engine
    engine.dispose()


def test_contributions_add_up_to_the_score_exactly() -> None:
    model = current_model()
    p = simulate(300, days=200, seed=11)
    x = compute(p.windows(199))
    for e in model.explain(x):
        assert e.baseline + sum(f.contribution for f in e.factors) == pytest.approx(e.health, abs=1e-6)
        assert 0 <= e.health <= 100 and 0 < e.risk < 1
        assert {f.feature for f in e.factors} >= set(FEATURES)
    # The explanation is the model's own: its risk is the booster's prediction.
    risks = model.risk(x)
    assert [e.risk for e in model.explain(x[:20])] == pytest.approx(list(risks[:20]), abs=1e-4)


def test_declining_account_scores_lower_and_alerts_with_reasons(db) -> None:  # type: ignore[no-untyped-def]
    with Session(db) as s:
        account = s.exec(select(Account).order_by(Account.id)).first()
        assert account is not None
        before = s.get(AccountScore, account.id)
        assert before is not None and before.factors == []  # the full rescore stores risk and health
        risk0, health0 = before.risk, before.health
        # Two weeks of seats given up, no active users, P1 tickets and bad sentiment.
        account.seats_used = account.seats_purchased // 5  # as Ingest folds a usage snapshot
        for d in range(14):
            at = TODAY + timedelta(days=d + 1)
            on_event(s, account, {"type": "usage_snapshot", "active_users": 0, "seats_used": account.seats_used},
                     at=_dt(at))
            on_event(s, account, {"type": "ticket_opened", "priority": "P1"}, at=_dt(at))
            on_event(s, account, {"type": "sentiment", "sentiment": -0.9}, at=_dt(at))
        on_event(s, account, {"type": "payment_failed", "amount": 100}, at=_dt(TODAY + timedelta(days=14)))
        s.commit()
        after = s.get(AccountScore, account.id)
        assert after is not None and after.risk > risk0 and after.health < health0
        assert after.baseline + sum(f["contribution"] for f in after.factors) == pytest.approx(after.health, abs=1e-6)
        alerts = s.exec(select(RiskAlert).where(RiskAlert.account_id == account.id)).all()
        assert len(alerts) == 1 and alerts[0].risk >= current_model().threshold  # once, on crossing
        assert any("seats used" in r for r in alerts[0].reasons)


def _dt(d: date):  # type: ignore[no-untyped-def]
    from datetime import UTC, datetime, time

    return datetime.combine(d, time(12), UTC)


def test_incremental_and_full_rescore_agree(db) -> None:  # type: ignore[no-untyped-def]
    with Session(db) as s:
        accounts = list(s.exec(select(Account).order_by(Account.id)))[:10]
        one = [compute(load_windows(s, [a], TODAY))[0] for a in accounts]
        together = compute(load_windows(s, accounts, TODAY))
    assert np.allclose(np.array(one), together)
    assert rescore_all(db, today=TODAY) == 60
    with Session(db) as s:
        e = explain_at(s, accounts[0], day=TODAY)
        stored = s.get(AccountScore, accounts[0].id)
        # The fast path and the explanation give the same figures, to the cent.
        assert stored is not None and (stored.health, stored.risk) == (e.health, e.risk)
        assert current(s, accounts[0], today=TODAY) == e


def test_early_warning_on_held_out_accounts() -> None:
    model = current_model()
    held = simulate(400, seed=42)
    r = report(risk_matrix(model, held), held, model.threshold)
    assert r["churned"] > 40
    assert r["median_lead_days"] >= 14 and r["precision"] >= 0.5 and r["recall"] >= 0.5, r


def test_training_from_a_store_and_reloading_the_model(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'h.db'}")
    p = simulate(240, days=330, seed=5)
    write_history(engine, p, start=date(2026, 1, 1))
    back, start = history_from_store(engine)
    assert start <= date(2026, 1, 1) + timedelta(days=1) and back.n == 240
    assert np.array_equal(back.churn_day >= 0, p.churn_day >= 0)
    assert np.allclose(back.signals["logins"].sum(), p.signals["logins"].sum())
    model = train_time_honest(engine)
    assert model.card["validation"]["auc"] > 0.8 and model.card["samples"] > 1000
    folder = model.save(tmp_path / "m")
    again = HealthModel.load(folder)
    x = compute(p.windows(150))
    assert np.allclose(again.risk(x), model.risk(x))
    card = (folder / "MODEL_CARD.md").read_text()
    assert "Intended use" in card and "Limits" in card and "days_to_renewal" in card
    engine.dispose()


def test_a_trained_model_is_used_when_configured(tmp_path: Path) -> None:
    """`model train` writes a versioned folder; AUTOPILOT_HEALTH_MODEL_DIR selects it."""
    import json

    from tests.runtime.test_cli import run_cli

    out = tmp_path / "m"
    r = run_cli("model", "train", "--simulate", "300", "--report-accounts", "200", "--out", str(out), "--json",
                env={"AUTOPILOT_DATA_DIR": str(tmp_path)})
    assert r.returncode == 0, r.stderr
    card = json.loads(r.stdout)["card"]
    assert card["early_warning"]["accounts"] == 200 and (out / "MODEL_CARD.md").exists()
    shown = run_cli("model", "report", "--accounts", "100", "--json",
                    env={"AUTOPILOT_DATA_DIR": str(tmp_path), "AUTOPILOT_HEALTH_MODEL_DIR": str(out)})
    assert json.loads(shown.stdout)["model"] == card["version"] != current_model().version


def test_snapshot_and_triggers_see_the_churn_risk(db) -> None:  # type: ignore[no-untyped-def]
    import cel

    from autopilot.runtime.accounts.snapshot import get_snapshot

    with Session(db) as s:
        account = s.exec(select(Account).order_by(Account.id)).first()
        assert account is not None
        score = s.get(AccountScore, account.id)
        snap = get_snapshot(s, account_id=account.id, today=TODAY)
    assert score is not None and snap is not None and snap.churn_risk == score.risk
    ctx = {"account": snap.as_cel(TODAY), "event": {"type": "login"}}
    assert cel.compile(f"account.churn_risk >= {score.risk}").execute(ctx) is True
    assert cel.compile(f"account.churn_risk > {score.risk}").execute(ctx) is False


def test_the_daily_rescore_moves_health_with_time_once_a_day(tmp_path: Path) -> None:
    from autopilot.runtime.health.scoring import rescore_stale

    db = make_engine(f"sqlite:///{tmp_path / 'r.db'}")
    seed_portfolio(db, n=30, today=TODAY)
    later = TODAY + timedelta(days=45)  # no events meanwhile: the windows slid, renewals came closer
    with Session(db) as s:
        account = s.exec(select(Account).order_by(Account.id)).first()
        assert account is not None
        before = current(s, account, today=later)
    assert rescore_stale(db, today=later) == 30
    assert rescore_stale(db, today=later) == 0  # already scored today
    with Session(db) as s:
        account = s.get(Account, account.id)
        assert account is not None
        after = current(s, account, today=later)
        fresh = explain_at(s, account, day=later)
    assert (after.health, after.risk) == (fresh.health, fresh.risk) != (before.health, before.risk)
