"""`model train --cutoff` then `model report`: figures from the store's own held-out
period (after the cutoff) only, the plain baseline beside the model, a PNG curve, and
renewal forecast accuracy against actual renewals (issue #15)."""

from __future__ import annotations

import json
import os
import subprocess
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
from sqlmodel import Session

from autopilot.runtime.health.asof import load_history
from autopilot.runtime.health.forecasts import forecast_accuracy
from autopilot.runtime.health.model import HealthModel, default_model_dir
from autopilot.runtime.health.report import held_out
from autopilot.runtime.store.accounts import Account
from autopilot.runtime.store.actions import ActionRecord
from autopilot.runtime.store.db import make_engine
from tests.runtime.health.honest_store import START, make_store
from tests.runtime.test_cli import AUTOPILOT


def _cli(*args: str, env: dict[str, str], cwd: Path) -> dict:
    base = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("AUTOPILOT_") and k != "DATABASE_URL"
    }
    r = subprocess.run(
        [AUTOPILOT, "model", *args, "--json"],
        cwd=cwd,
        env=base | env,
        capture_output=True,
        text=True,
        check=False,
        timeout=600,
    )
    assert r.returncode == 0, r.stderr + r.stdout
    return json.loads(r.stdout.strip().splitlines()[-1])


def test_train_with_cutoff_then_report_on_the_held_out_period_only(tmp_path: Path) -> None:
    make_store(tmp_path / "s.db", days=420).dispose()
    cutoff = START + timedelta(days=330)
    env = {
        "AUTOPILOT_DATA_DIR": str(tmp_path / "data"),
        "AUTOPILOT_DATABASE_URL": f"sqlite:///{tmp_path / 's.db'}",
    }
    trained = _cli(
        "train",
        "--cutoff",
        str(cutoff),
        "--validate-months",
        "2",
        "--out",
        str(tmp_path / "m"),
        env=env,
        cwd=tmp_path,
    )
    card = trained["card"]
    assert card["cutoff"] == str(cutoff) and card["validation"]["baseline_auc"] is not None
    png = tmp_path / "curve.png"
    report = _cli(
        "report",
        "--png",
        str(png),
        env=env | {"AUTOPILOT_HEALTH_MODEL_DIR": str(tmp_path / "m")},
        cwd=tmp_path,
    )["store"]
    assert png.read_bytes()[:4] == b"\x89PNG"
    # The same figures, counted here independently on the days after the cutoff.
    db = make_engine(f"sqlite:///{tmp_path / 's.db'}")
    h = load_history(db)
    first, end, horizon = h.day_index(cutoff) + 1, h.days - 1, card["horizon_days"]
    seen = np.zeros(h.n, dtype=bool)
    snapshots = 0
    for d in range(first, end + 1):
        idx = h.eligible(d)
        seen[idx] = True
        snapshots += len(idx) if d <= end - horizon else 0
    churned = int((seen & (h.churn_day >= first) & (h.churn_day <= end)).sum())
    assert report["period"] == f"{cutoff + timedelta(days=1)} to {h.date_of(end)}"
    assert (report["snapshots"], report["churned"], report["accounts"]) == (
        snapshots,
        churned,
        int(seen.sum()),
    )
    assert churned > 5 and report["auc"] is not None and report["baseline_auc"] is not None
    model = HealthModel.load(tmp_path / "m")
    assert held_out(model, h) | {"png": report["png"]} == report | {"png": report["png"]}
    if report["threshold"] is not None:
        assert 0 <= report["precision"] <= 1 and report["alert_rate"] is not None
    db.dispose()


def test_a_model_without_cutoff_is_not_reported_as_if_held_out(tmp_path: Path) -> None:
    db = make_store(tmp_path / "s.db", n=30, days=200)
    with pytest.raises(ValueError, match="cutoff"):
        held_out(HealthModel.load(default_model_dir()), load_history(db))
    db.dispose()


def _forecast(s: Session, account: str, made: date, p: float, arr: float) -> None:
    at = datetime.combine(made, datetime.min.time(), UTC)
    s.add(
        ActionRecord(
            run_key=f"r-{account}-{made}",
            workflow_id="w",
            agent="renewal",
            account_id=account,
            segment="smb",
            tool="crm_write_forecast",
            status="executed",
            payload_hash="h",
            payload={
                "tool": "crm_write_forecast",
                "args": {"account_id": account, "renewal_probability": p, "forecast_arr": arr},
            },
            created_at=at,
            updated_at=at,
        )
    )


def test_renewal_forecasts_against_actual_renewals(tmp_path: Path) -> None:
    db = make_engine(f"sqlite:///{tmp_path / 'f.db'}")
    with Session(db) as s:
        for aid, arr, renewal, churned in (
            (
                "a",
                1000.0,
                date(2026, 3, 1),
                None,
            ),  # renewed (its renewal date passed, still a customer)
            ("b", 2000.0, date(2026, 3, 15), None),
            ("c", 500.0, date(2026, 3, 1), date(2026, 2, 20)),  # churned
            ("d", 800.0, date(2027, 1, 1), None),  # not yet
        ):
            s.add(
                Account(
                    id=aid,
                    name=aid,
                    segment="smb",
                    region="eu",
                    arr=arr,
                    seats_purchased=5,
                    seats_used=5,
                    active_users_30d=1,
                    logins_30d=1,
                    renewal_date=renewal,
                    owner_csm="x",
                    status="churned" if churned else "active",
                    churned_at=churned,
                )
            )
        s.commit()
        _forecast(s, "a", date(2026, 1, 10), 0.9, 100.0)  # superseded by the later one
        _forecast(s, "a", date(2026, 2, 1), 0.8, 900.0)
        _forecast(s, "b", date(2026, 2, 1), 0.6, 2400.0)
        _forecast(s, "c", date(2026, 2, 1), 0.7, 500.0)
        _forecast(s, "d", date(2026, 2, 1), 0.9, 800.0)
        s.commit()
        r = forecast_accuracy(s, today=date(2026, 4, 1))
    assert (r["forecasts"], r["resolved"]) == (4, 3)
    assert r["mape"] == pytest.approx((100 / 1000 + 400 / 2000) / 2)  # renewed accounts
    assert r["mape_meets_kpi"] is True
    assert r["brier"] == pytest.approx(((0.8 - 1) ** 2 + (0.6 - 1) ** 2 + 0.7**2) / 3, abs=1e-4)
    assert sum(b["forecasts"] for b in r["calibration"]) == 3
    db.dispose()
