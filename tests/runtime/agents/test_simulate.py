"""`autopilot simulate`: the agents' real decision path in dry run over a small seeded
portfolio, beside no action and the rule playbook; nothing sent, the store untouched."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import shutil
import subprocess
import sys
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlmodel import Session, func, select

from autopilot.runtime.agents.simulate import (
    RULES,
    SimulationError,
    figures,
    outcome,
    simulate,
)
from autopilot.runtime.config import Settings
from autopilot.runtime.devstack.seed import seed_portfolio
from autopilot.runtime.devstack.smtp_sink import start_smtp_sink
from autopilot.runtime.optimizer.catalogue import entry
from autopilot.runtime.store.actions import ActionRecord
from autopilot.runtime.store.db import make_engine
from autopilot.runtime.store.mail import ReceivedMail
from tests.conftest import REPO, free_port

START = date(2026, 5, 4)  # a fixed as-of date: the same days, weekdays and quarter every run
AUTOPILOT = str(Path(sys.executable).parent / "autopilot")
FIGURES = {
    "runs",
    "actions_proposed",
    "auto_executed",
    "approval",
    "denied",
    "deny_codes",
    "spend",
    "expected_uplift_arr",
    "accounts",
    "arr",
    "retained_arr",
    "cbr",
}


def _digest(path: Path) -> str:
    """The store's bytes, its WAL included."""
    h = hashlib.sha256()
    for p in (path, path.with_name(path.name + "-wal")):  # -shm is an index, not data
        h.update(p.name.encode() + (p.read_bytes() if p.exists() else b""))
    return h.hexdigest()


@pytest.fixture(scope="module")
def real(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A configured store with the demo's 40 first accounts, an SMTP sink on the configured
    port, and a 30-day simulation of every agent on a copy of that store."""
    folder = tmp_path_factory.mktemp("real")
    settings = Settings(
        data_dir=folder, smtp_host="127.0.0.1", smtp_port=free_port(), agents_dir=REPO / "agents"
    )
    store = make_engine(settings.db_url)
    seed_portfolio(store, n=40, today=START)
    store.dispose()
    path = Path(settings.db_url.removeprefix("sqlite:///"))
    sink_db = make_engine(f"sqlite:///{folder / 'sink.db'}")
    sink = start_smtp_sink(sink_db, port=settings.smtp_port)
    before = _digest(path)
    try:
        report = asyncio.run(simulate(settings, days=30, start=START, from_store=True))
    finally:
        sink.stop()
    with Session(sink_db) as s:
        mails = s.exec(select(func.count()).select_from(ReceivedMail)).one()
    return {"report": report, "before": before, "after": _digest(path), "mails": mails}


def test_nothing_is_sent_and_the_store_is_not_written(real: dict[str, Any]) -> None:
    assert real["mails"] == 0  # the SMTP sink on the configured port heard nothing
    assert real["after"] == real["before"]  # the configured store: not a byte changed
    # No tool ran in the throwaway stores either: no call, no mail, no message, no task.
    assert real["report"]["sent"] == {
        "tool_calls": 0,
        "mails": 0,
        "in_app_messages": 0,
        "csm_tasks": 0,
    }
    agents = real["report"]["strategies"]["agents"]
    assert agents["auto_executed"] + agents["approval"] > 0  # yet the agents did act


def test_three_strategies_on_the_same_accounts(real: dict[str, Any]) -> None:
    report = real["report"]
    portfolio, s = report["portfolio"], report["strategies"]
    assert list(s) == ["no_action", RULES, "agents"]
    assert portfolio["accounts"] == 40 and portfolio["days"] == 30 and portfolio["events"] > 0
    for figures_ in s.values():
        assert figures_["accounts"] == 40 and figures_["arr"] == portfolio["arr"]
        assert figures_["budget"] == s["no_action"]["budget"] > 0
    none = s["no_action"]
    assert none["actions_proposed"] == none["spend"] == none["expected_uplift_arr"] == 0
    assert s[RULES]["actions_proposed"] > 0 and s["agents"]["actions_proposed"] > 0
    # Each strategy's ledger holds its own actions only: the slices add up to the whole.
    for name, by in ((RULES, "by_rule"), ("agents", "by_agent")):
        rows = s[name][by].values()
        for key in ("actions_proposed", "auto_executed", "approval", "denied"):
            assert sum(r[key] for r in rows) == s[name][key]
        assert sum(r["spend"] for r in rows) == pytest.approx(s[name]["spend"], abs=0.05)
    assert set(s["agents"]["by_agent"]) == set(report["agents"])
    assert {"renewal", "churn_rescue", "adoption", "expansion"} <= set(report["agents"])
    assert set(s[RULES]["by_rule"]) == {"health_below_50", "renewal_within_60d", "seats_95pct"}


def test_retained_arr_and_cbr_follow_from_the_counted_figures(real: dict[str, Any]) -> None:
    s = real["report"]["strategies"]
    base = s["no_action"]["retained_arr"]
    for name in (RULES, "agents"):
        f = s[name]
        # Retained ARR = no action's + the expected uplift; CbR = spend / retained ARR.
        assert f["retained_arr"] == pytest.approx(base + f["expected_uplift_arr"], abs=0.05)
        assert f["cbr"] == pytest.approx(f["spend"] / f["retained_arr"], abs=1e-6)
        assert f["spend_pct_of_budget"] == pytest.approx(100 * f["spend"] / f["budget"], abs=0.01)
        assert f["auto_executed"] + f["approval"] + f["denied"] == f["actions_proposed"]
    for row in s["agents"]["by_agent"].values():
        if row["retained_arr"]:
            assert row["cbr"] == pytest.approx(row["spend"] / row["retained_arr"], abs=1e-6)
    assert s["agents"]["expected_uplift_arr"] > 0


def _record(
    key: str, account: str, option: str, status: str, *, approval: bool = False
) -> ActionRecord:
    now = datetime(2026, 5, 5, tzinfo=UTC)
    return ActionRecord(
        run_key=key,
        workflow_id="w",
        agent="churn_rescue",
        account_id=account,
        segment="mid_market",
        tool=entry(option).tool,
        payload={"option": option},
        payload_hash="",
        status=status,
        needed_approval=approval,
        created_at=now,
        updated_at=now,
    )


def test_the_outcome_by_hand() -> None:
    """Two mid-market accounts: A (ARR 100,000, risk 0.4) gets a CSM call (effect 0.16),
    a denied 25 % discount and a second CSM call (no further effect); B (ARR 50,000, risk
    0.2) gets nothing."""
    assert entry("csm_call").retention["mid_market"] == 0.16
    records = [
        _record("sim:1", "A", "csm_call", "executed"),
        _record("sim:2", "A", "discount_25pct", "denied"),
        _record("sim:3", "A", "csm_call", "executed", approval=True),
    ]
    risk0, arr = {"A": 0.4, "B": 0.2}, {"A": 100_000.0, "B": 50_000.0}
    risk, uplift = outcome(records, risk0, arr, lambda _a, o, seg: entry(o).retention[seg])
    assert risk == {"A": pytest.approx(0.4 * 0.84), "B": 0.2}
    assert uplift == {"sim:1": pytest.approx(100_000 * 0.4 * 0.16)}  # 6,400
    f = figures(
        records,
        spend={"sim:1": 80.0, "sim:3": 80.0},
        codes={"sim:2": ["budget.account_exceeded"]},
        accounts={"A", "B"},
        arr=arr,
        risk=risk,
    )
    # 100,000 × (1 − 0.336) + 50,000 × (1 − 0.2) = 66,400 + 40,000
    assert f["retained_arr"] == 106_400.0
    assert f["spend"] == 160.0 and f["cbr"] == round(160 / 106_400, 6)
    assert (f["auto_executed"], f["approval"], f["denied"]) == (1, 1, 1)
    assert f["deny_codes"] == {"budget.account_exceeded": 1}


def test_denied_actions_are_counted_when_the_policy_denies(tmp_path: Path) -> None:
    """Budgets of 0.001 % of ARR a quarter: every action with a cost is denied by the
    gate (budget.account_exceeded), is not spent and has no effect."""
    policies = tmp_path / "policies"
    shutil.copytree(REPO / "policies", policies)
    budget = policies / "autopilot" / "budget" / "data.json"
    data = json.loads(budget.read_text())
    for seg in data["limits"]["segments"].values():
        seg["account_quarter_pct_of_arr"] = 0.001
    budget.write_text(json.dumps(data))
    settings = Settings(data_dir=tmp_path, policies_dir=policies, agents_dir=REPO / "agents")
    report = asyncio.run(
        simulate(settings, agents=["churn_rescue", "renewal"], accounts=30, days=20, start=START)
    )
    s = report["strategies"]
    for name in (RULES, "agents"):
        assert s[name]["deny_codes"].get("budget.account_exceeded", 0) > 0, name
        assert s[name]["denied"] > 0
        assert s[name]["spend"] <= s[name]["budget"]
    # The rules' CSM calls and AE tasks (an hour of a CSM, budgets of cents): all denied.
    rules = s[RULES]["by_rule"]
    assert rules["health_below_50"]["actions_proposed"] + rules["seats_95pct"]["actions_proposed"]
    for rule in ("health_below_50", "seats_95pct"):
        assert rules[rule]["denied"] == rules[rule]["actions_proposed"]
        assert rules[rule]["spend"] == rules[rule]["expected_uplift_arr"] == 0


def test_deterministic_for_a_seed_and_an_unknown_agent_is_refused(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, agents_dir=REPO / "agents")
    runs = [
        asyncio.run(simulate(settings, agents=["renewal"], accounts=20, days=8, start=START))
        for _ in range(2)
    ]
    assert runs[0]["strategies"] == runs[1]["strategies"]
    assert runs[0]["portfolio"] == runs[1]["portfolio"]
    with pytest.raises(SimulationError, match="no agent nope"):
        asyncio.run(simulate(settings, agents=["nope"], accounts=5, days=1, start=START))


def test_the_command_prints_one_json_object(tmp_path: Path) -> None:
    proc = subprocess.run(
        [
            AUTOPILOT,
            "simulate",
            "--agent",
            "renewal",
            "--segment",
            "smb",
            "--accounts",
            "30",
            "--days",
            "6",
            "--start",
            START.isoformat(),
            "--json",
        ],
        check=False,
        capture_output=True,
        text=True,
        timeout=300,
        env={
            **os.environ,
            "AUTOPILOT_DATA_DIR": str(tmp_path),
            "AUTOPILOT_AGENTS_DIR": str(REPO / "agents"),
        },
    )
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)  # the whole of stdout is one object
    assert out["ok"] is True
    assert set(out) == {
        "ok",
        "portfolio",
        "agents",
        "budget_per_quarter",
        "strategies",
        "assumptions",
        "sent",
        "elapsed_s",
    }
    assert out["agents"] == ["renewal"]
    assert out["portfolio"]["segment"] == "smb" and out["portfolio"]["days"] == 6
    assert set(out["strategies"]) == {"no_action", RULES, "agents"}
    for f in out["strategies"].values():
        assert FIGURES | {"budget", "spend_pct_of_budget", "accounts_touched"} <= set(f)
    assert set(out["strategies"]["agents"]["by_agent"]["renewal"]) == FIGURES
    assert not (tmp_path / "autopilot.db").exists()  # the configured store was never opened
    bad = subprocess.run(
        [AUTOPILOT, "simulate", "--segment", "galactic", "--json"],
        check=False,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert bad.returncode == 2 and json.loads(bad.stdout)["ok"] is False
