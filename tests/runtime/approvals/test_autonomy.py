"""The autonomy rate: of the actions decided in a period, the share the agents executed
without a person and that were not rolled back; per agent, segment and both, scoped to
one organisation; in the manager view and `autopilot metrics autonomy`."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy.engine import Engine

from autopilot.runtime.approvals.metrics import autonomy, manager_view
from autopilot.runtime.contracts.audit import AuditEvent
from autopilot.runtime.graph.requests import approval_id_for
from autopilot.runtime.services import Services, make_policy_engine
from autopilot.runtime.store import audit
from autopilot.runtime.store.accounts import Account
from autopilot.runtime.store.actions import ActionRecord
from autopilot.runtime.store.approvals import Approval
from autopilot.runtime.store.db import make_engine, transaction
from autopilot.runtime.store.tool_calls import ToolCallRecord
from autopilot.tools.registry import Registry
from tests.conftest import make_settings
from tests.runtime.test_cli import run_cli

ACCOUNTS = [  # id, org, segment
    ("acc-ent", "demo", "enterprise"),
    ("acc-smb", "demo", "smb"),
    ("acc-tt", "demo", "tech_touch"),
    ("glx-smb", "globex", "smb"),
]
SEGMENTS = {a: g for a, _, g in ACCOUNTS}
# key, agent, account, status, hours before now (negative: after the period's end)
ACTIONS = [
    ("a1", "churn_rescue", "acc-tt", "executed", 1),  # autonomous
    ("a2", "churn_rescue", "acc-tt", "executed", 2),  # autonomous
    ("a3", "churn_rescue", "acc-tt", "executed", 3),  # an inbox item (an approved edit)
    ("a4", "churn_rescue", "acc-smb", "executed", 4),  # the gate asked for approval
    ("a5", "churn_rescue", "acc-smb", "executed", 5),  # compensated (the tool call)
    ("a6", "expansion", "acc-ent", "executed", 6),  # compensated (the audit)
    ("a7", "expansion", "acc-ent", "executed", 7),  # a rollback that failed: autonomous
    ("a8", "expansion", "acc-ent", "rejected", 8),
    ("a9", "expansion", "acc-smb", "denied", 9),
    ("a10", "churn_rescue", "acc-smb", "failed", 10),
    ("a11", "churn_rescue", "acc-tt", "pending", 11),  # in flight
    ("a12", "expansion", "acc-ent", "allowed", 12),  # in flight
    ("a13", "expansion", "acc-smb", "preempted", 13),  # another final status: other
    ("old", "churn_rescue", "acc-tt", "executed", 24 * 60),  # before the period
    ("late", "churn_rescue", "acc-tt", "executed", -1),  # after it
    ("g1", "churn_rescue", "glx-smb", "executed", 1),  # another organisation
]


def row(rate: float | None, decided: int, **counts: int) -> dict[str, Any]:
    keys = ("autonomous", "with_person", "rolled_back", "rejected", "denied", "failed", "other")
    return {
        "rate": rate,
        "decided": decided,
        **{k: counts.get(k, 0) for k in keys},
        "in_flight": counts.get("in_flight", 0),
    }


DEMO = {
    "overall": row(
        0.273,
        11,
        autonomous=3,
        with_person=2,
        rolled_back=2,
        rejected=1,
        denied=1,
        failed=1,
        other=1,
        in_flight=2,
    ),
    "by_agent": [
        {"agent": "churn_rescue"}
        | row(0.333, 6, autonomous=2, with_person=2, rolled_back=1, failed=1, in_flight=1),
        {"agent": "expansion"}
        | row(0.2, 5, autonomous=1, rolled_back=1, rejected=1, denied=1, other=1, in_flight=1),
    ],
    "by_segment": [
        {"segment": "enterprise"}
        | row(0.333, 3, autonomous=1, rolled_back=1, rejected=1, in_flight=1),
        {"segment": "smb"} | row(0.0, 5, with_person=1, rolled_back=1, denied=1, failed=1, other=1),
        {"segment": "tech_touch"} | row(0.667, 3, autonomous=2, with_person=1, in_flight=1),
    ],
    "by_agent_segment": [
        {"agent": "churn_rescue", "segment": "smb"}
        | row(0.0, 3, with_person=1, rolled_back=1, failed=1),
        {"agent": "churn_rescue", "segment": "tech_touch"}
        | row(0.667, 3, autonomous=2, with_person=1, in_flight=1),
        {"agent": "expansion", "segment": "enterprise"}
        | row(0.333, 3, autonomous=1, rolled_back=1, rejected=1, in_flight=1),
        {"agent": "expansion", "segment": "smb"} | row(0.0, 2, denied=1, other=1),
    ],
}


def portfolio(tmp_path: Path, now: datetime) -> Engine:
    """The rows the runtime writes for each outcome: the action, its inbox item, the
    compensating tool call and the rollback's audit entry."""
    db = make_engine(f"sqlite:///{tmp_path / 'autopilot.db'}")
    with transaction(db) as s:
        for account_id, org, segment in ACCOUNTS:
            s.add(
                Account(
                    id=account_id,
                    org_id=org,
                    name=account_id,
                    segment=segment,
                    region="eu",
                    arr=100_000,
                    seats_purchased=10,
                    seats_used=8,
                    active_users_30d=8,
                    logins_30d=80,
                    renewal_date=date(2030, 1, 1),
                    owner_csm="alice",
                )
            )
        for key, agent, account_id, status, hours in ACTIONS:
            at = now - timedelta(hours=hours)
            # a4's row kept the segment it had when proposed: the account's counts.
            segment = "mid_market" if key == "a4" else SEGMENTS[account_id]
            s.add(
                ActionRecord(
                    run_key=key,
                    workflow_id=f"wf-{key}",
                    agent=agent,
                    account_id=account_id,
                    segment=segment,
                    tool="send_email",
                    payload={},
                    payload_hash="h",
                    status=status,
                    needed_approval=key == "a4",
                    created_at=at,
                    updated_at=at,
                )
            )
        # a3: edited in the inbox; the gate let the edit through, a person still approved it.
        original = approval_id_for("a3")
        for item_id, status, edited_from in (
            (original, "superseded", None),
            (approval_id_for(f"{original}/edit/abc"), "approved", original),
        ):
            s.add(
                Approval(
                    id=item_id,
                    org_id="demo",
                    workflow_id="wf-a3",
                    run_key=item_id,
                    agent="churn_rescue",
                    account_id="acc-tt",
                    action={},
                    payload_hash="h",
                    roles=["csm"],
                    reasons=[],
                    status=status,
                    created_at=now,
                    due_at=now,
                    edited_from=edited_from,
                )
            )
        for key, status in (("a5", "done"), ("a7", "failed")):
            s.add(
                ToolCallRecord(
                    idempotency_key=f"{key}/compensate",
                    tool="undo",
                    args={},
                    status=status,
                    started_at=now,
                )
            )
    for key, status in (("a6", "compensated"), ("a7", "denied")):
        audit.append(
            db,
            [
                AuditEvent(
                    workflow_id=f"wf-{key}",
                    run_key=f"{key}/compensate",
                    step="compensate",
                    actor="maria",
                    input_hash="i",
                    decision={"status": status},
                    bundle_hash="b",
                    spec_hash="s",
                )
            ],
        )
    return db


def figures(result: dict[str, Any]) -> dict[str, Any]:
    return {k: result[k] for k in ("overall", "by_agent", "by_segment", "by_agent_segment")}


def test_autonomy_counts_each_outcome_per_agent_segment_and_overall(tmp_path: Path) -> None:
    now = datetime(2025, 5, 15, 12, tzinfo=UTC)
    db = portfolio(tmp_path, now)
    since, until = now - timedelta(days=30), now + timedelta(seconds=1)
    with transaction(db) as s:
        result = autonomy(s, org_id="demo", since=since, until=until)
    assert figures(result) == DEMO
    assert (result["since"], result["until"]) == (since.isoformat(), until.isoformat())


def test_autonomy_is_scoped_to_the_organisation_and_the_period(tmp_path: Path) -> None:
    now = datetime(2025, 5, 15, 12, tzinfo=UTC)
    db = portfolio(tmp_path, now)
    with transaction(db) as s:
        globex = autonomy(s, org_id="globex", since=now - timedelta(days=30), until=now)
        wider = autonomy(
            s, org_id="demo", since=now - timedelta(days=90), until=now + timedelta(hours=2)
        )
        nobody = autonomy(s, org_id="initech", since=now - timedelta(days=30), until=now)
    assert globex["overall"] == row(1.0, 1, autonomous=1)
    assert globex["by_agent_segment"] == [
        {"agent": "churn_rescue", "segment": "smb"} | row(1.0, 1, autonomous=1)
    ]
    # The old and the late executions join when the period covers them.
    assert wider["overall"] == row(
        0.385,
        13,
        autonomous=5,
        with_person=2,
        rolled_back=2,
        rejected=1,
        denied=1,
        failed=1,
        other=1,
        in_flight=2,
    )
    assert nobody["overall"] == row(None, 0) and nobody["by_agent"] == []


def test_the_manager_view_shows_the_autonomy_figures(tmp_path: Path) -> None:
    now = datetime(2025, 5, 15, 12, tzinfo=UTC)
    db = portfolio(tmp_path, now)
    settings = make_settings(tmp_path)
    svc = Services(
        settings=settings,
        db=db,
        policy=make_policy_engine(settings),
        specs={},
        tools=Registry(),
        smtp=None,
        clock=lambda: now,
    )
    view = manager_view(svc, org_id="demo", now=now)
    assert view["autonomy_rate"] == 0.273
    assert figures(view["autonomy"]) == DEMO  # this quarter: since 1 April, so "old" is out


def test_cli_metrics_autonomy_json_and_table(tmp_path: Path) -> None:
    portfolio(tmp_path, datetime.now(UTC))
    env = {
        "AUTOPILOT_DATA_DIR": str(tmp_path),
        "DATABASE_URL": f"sqlite:///{tmp_path / 'autopilot.db'}",
    }
    r = run_cli("metrics", "autonomy", "--days", "30", "--json", env=env)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["ok"] is True and out["org_id"] == "demo"
    assert figures(out) == DEMO
    r = run_cli("metrics", "autonomy", "--org", "globex", "--days", "30", "--json", env=env)
    assert json.loads(r.stdout)["overall"] == row(1.0, 1, autonomous=1)
    r = run_cli("metrics", "autonomy", "--days", "30", env=env)
    assert r.returncode == 0, r.stderr
    cells = [line.split() for line in r.stdout.splitlines()]
    assert ["all", "all", "27%", "11", "3", "2", "2", "1", "1", "1", "1", "2"] in cells
    assert [
        "churn_rescue",
        "tech_touch",
        "67%",
        "3",
        "2",
        "1",
        "0",
        "0",
        "0",
        "0",
        "0",
        "1",
    ] in cells
