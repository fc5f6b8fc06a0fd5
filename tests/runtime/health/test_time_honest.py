"""Time-honest training (issue #15): features as of the day they describe, no day
before an account started, a time-based split that reads nothing after the cutoff,
and a leakage check that fails training, naming the feature."""

from __future__ import annotations

import json
import os
import subprocess
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import insert
from sqlmodel import Session, select

from autopilot.runtime.health.asof import load_history, samples
from autopilot.runtime.health.features import FEATURES, WINDOW
from autopilot.runtime.health.honest import HORIZON, train_time_honest
from autopilot.runtime.health.leakage import LeakageError
from autopilot.runtime.store.accounts import Account
from autopilot.runtime.store.customer import AccountDay, Contract, Subscription
from tests.runtime.health.honest_store import START, add_leaky_contracts, make_store
from tests.runtime.test_cli import AUTOPILOT

DTR = FEATURES.index("days_to_renewal")


def test_a_renewal_date_that_is_the_churn_date_fails_training(tmp_path: Path) -> None:
    db = make_store(tmp_path / "leaky.db")
    add_leaky_contracts(db)
    with pytest.raises(LeakageError, match="days_to_renewal") as err:
        train_time_honest(db)
    assert not err.value.result["passed"] and err.value.result["top_feature"] == "days_to_renewal"
    db.dispose()


def test_features_of_a_past_day_do_not_change_when_later_rows_arrive(tmp_path: Path) -> None:
    db = make_store(tmp_path / "a.db", n=40, days=151)  # history ends on day 150
    past = 150
    h0 = load_history(db)
    aid0, aid1 = (h0.ids[int(i)] for i in h0.eligible(past)[:2])  # customers on that day
    with Session(db) as s:
        s.add(
            Contract(
                id="c1",
                account_id=aid0,
                start_date=START,
                renewal_date=START + timedelta(days=180),
                list_price=1,
                net_price=1,
            )
        )
        # Six-monthly billing from the first day: renews on 1 July (day 181), 7 seats.
        s.add(
            Subscription(
                account_id=aid1, product="core", mrr=100, quantity=7, start=START, billing_period=6
            )
        )
        s.commit()
    before = load_history(db)
    idx = before.eligible(past)
    x_before = before.features(past, idx)
    i = before.ids.index(aid0)
    assert x_before[list(idx).index(i), DTR] == 30  # the contract known that day
    j = list(idx).index(before.ids.index(aid1))
    assert x_before[j, DTR] == 31 and before.seats_purchased[before.ids.index(aid1), past] == 7
    with Session(db) as s:
        # Later: new rollups (NPS, seats, activity), a renewed contract, a new snapshot date.
        s.execute(
            insert(AccountDay),
            [
                {
                    "account_id": aid,
                    "day": START + timedelta(days=d),
                    "logins": 50,
                    "active_users": 9,
                    "nps": 2,
                    "seats_used": 1,
                }
                for aid in before.ids
                for d in range(151, 260, 3)
            ],
        )
        s.add(
            Contract(
                id="c2",
                account_id=aid0,
                start_date=START + timedelta(days=181),
                renewal_date=START + timedelta(days=545),
                list_price=1,
                net_price=1,
            )
        )
        s.add(
            Subscription(
                account_id=aid1,
                product="reports",
                mrr=50,
                quantity=3,
                start=START + timedelta(days=170),
            )
        )  # an upsell after that day
        acc = s.get(Account, aid0)
        assert acc is not None
        acc.renewal_date = START + timedelta(days=545)
        s.commit()
    after = load_history(db)
    assert after.days > before.days
    assert np.array_equal(after.eligible(past), idx)
    assert np.allclose(after.features(past, idx), x_before, equal_nan=True)
    db.dispose()


def test_no_snapshot_window_reaches_before_the_account_started(tmp_path: Path) -> None:
    db = make_store(tmp_path / "a.db", n=30, days=260)
    with Session(db) as s:
        row = s.exec(select(Account).order_by(Account.id)).first()
        assert row is not None
        late_id = row.id
        # Signed on day 120: its first contract starts then (the rollups before are noise).
        s.add(
            Contract(
                id="c-late",
                account_id=late_id,
                start_date=START + timedelta(days=120),
                renewal_date=START + timedelta(days=485),
                list_price=1,
                net_price=1,
            )
        )
        s.execute(
            AccountDay.__table__.delete().where(  # type: ignore[attr-defined]
                AccountDay.account_id == late_id, AccountDay.day < START + timedelta(days=120)
            )
        )
        s.commit()
    h = load_history(db)
    i = h.ids.index(late_id)
    assert h.start_day[i] == 120
    _, _, acc, day = samples(h, 0, h.days - 1, horizon=HORIZON)
    mine = day[acc == i]
    assert len(mine) and mine.min() == 120 + WINDOW - 1
    assert (day[acc != i] >= WINDOW - 1).all()
    db.dispose()


def test_time_split_and_nothing_after_the_cutoff_changes_the_model(tmp_path: Path) -> None:
    db = make_store(tmp_path / "a.db")
    cutoff = date(2026, 10, 20)
    model = train_time_honest(db, cutoff=cutoff, validate_months=2)
    split = {
        k: date.fromisoformat(v)
        for k, v in model.card["split"].items()
        if k[0] in "tvc" and k != "validate_months"
    }
    assert split["cutoff"] == cutoff
    assert split["train_last"] + timedelta(days=HORIZON) < split["validate_first"]  # purge gap
    assert split["validate_last"] + timedelta(days=HORIZON) <= cutoff  # labels end by the cutoff
    assert model.card["leakage_check"]["passed"]
    assert 0.5 < model.card["validation"]["baseline_auc"] <= 1
    # Churn dates after the cutoff rewritten: the training data, hence the model, is the same.
    with Session(db) as s:
        for a in s.exec(select(Account)).all():
            if a.churned_at and a.churned_at > cutoff:
                a.churned_at = None
            elif a.churned_at is None:
                a.churned_at = cutoff + timedelta(days=3)
        s.commit()
    again = train_time_honest(db, cutoff=cutoff, validate_months=2)
    assert again.version == model.version
    db.dispose()


def test_model_train_without_out_writes_into_the_data_dir(tmp_path: Path) -> None:
    make_store(tmp_path / "store.db", n=160).dispose()
    work, data = tmp_path / "cwd", tmp_path / "data"
    work.mkdir()
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("AUTOPILOT_") and k != "DATABASE_URL"
    }
    env |= {
        "AUTOPILOT_DATA_DIR": str(data),
        "AUTOPILOT_DATABASE_URL": f"sqlite:///{tmp_path / 'store.db'}",
    }
    r = subprocess.run(
        [AUTOPILOT, "model", "train", "--json"],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=600,
    )
    assert r.returncode == 0, r.stderr + r.stdout
    cards = list(data.glob("models/*/card.json"))
    assert len(cards) == 1 and (cards[0].parent / "model.txt").exists()
    assert list(work.iterdir()) == []  # nothing in the current directory


def test_model_train_on_a_leaky_store_is_refused_with_the_leakage_figures(
    tmp_path: Path,
) -> None:
    db = make_store(tmp_path / "leaky.db")
    add_leaky_contracts(db)
    db.dispose()
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("AUTOPILOT_") and k != "DATABASE_URL"
    }
    env |= {
        "AUTOPILOT_DATA_DIR": str(tmp_path / "data"),
        "AUTOPILOT_DATABASE_URL": f"sqlite:///{tmp_path / 'leaky.db'}",
    }

    def train(*flags: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [AUTOPILOT, "model", "train", *flags],
            env=env,
            capture_output=True,
            text=True,
            check=False,
            timeout=600,
        )

    r = train("--json")
    assert r.returncode == 2, r.stderr + r.stdout
    out = json.loads(r.stdout)
    assert out["ok"] is False and "days_to_renewal" in out["error"]
    check = out["leakage_check"]
    assert not check["passed"] and check["problems"]
    assert check["top_feature"] == "days_to_renewal"
    assert check["top_gain_share"] > check["max_gain_share"] == 0.5
    plain = train()
    assert plain.returncode == 2 and plain.stdout == ""
    assert "error:" in plain.stderr and "days_to_renewal" in plain.stderr
    assert not (tmp_path / "data" / "models").exists()  # nothing saved
