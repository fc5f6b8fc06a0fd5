"""Compliance exports from a real run (Temporal dev server, regopy, SQLite): every
document validates against its schema, its figures are the store's rows, missing
evidence is a gap, and one account's data survives export -> import -> export."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator
from sqlmodel import Session, SQLModel, col, select

from autopilot.runtime.compliance import data_act
from autopilot.runtime.compliance.evidence import ExportContext, utc_now
from autopilot.runtime.compliance.export import ExportError, export
from autopilot.runtime.compliance.render import FRAMEWORKS
from autopilot.runtime.store.accounts import Contact
from autopilot.runtime.store.actions import ActionRecord, PolicyDecisionRecord
from autopilot.runtime.store.approvals import ApprovalVote
from autopilot.runtime.store.db import make_engine
from autopilot.runtime.store.tool_calls import ToolCallRecord
from tests.conftest import REPO, Stack
from tests.runtime.audit.test_replay import approve_then_reject, cli

SCHEMAS = REPO / "runtime" / "compliance" / "schemas"


def context(stack: Stack) -> ExportContext:
    return ExportContext(
        db=stack.db,
        settings=stack.settings,
        policy=stack.services.policy,
        tools=stack.services.tools,
        now=utc_now(),
    )


def exported(out: Path, framework: str) -> dict[str, Any]:
    """The written JSON, validated here against the schema file (not the exporter's own check)."""
    body = json.loads((out / f"{framework}.json").read_text())
    schema = json.loads((SCHEMAS / f"{framework}.json").read_text())
    errors = list(Draft202012Validator(schema).iter_errors(body))
    assert not errors, [e.message for e in errors]
    assert (out / f"{framework}.md").read_text().startswith("# ")
    assert "<h1>" in (out / f"{framework}.html").read_text()
    return body


def gap_codes(body: dict[str, Any]) -> set[str]:
    return {g["code"] for g in body["gaps"]}


async def test_documents_validate_and_their_figures_are_the_stores_rows(
    stack: Stack, tmp_path: Path
) -> None:
    await approve_then_reject(stack)
    ctx, out = context(stack), tmp_path / "out"
    for framework in ("eu-ai-act", "iso42001", "model-cards"):
        assert export(ctx, framework, out).valid
    eu, iso, cards = (exported(out, f) for f in ("eu-ai-act", "iso42001", "model-cards"))

    with Session(stack.db) as s:
        outcomes = Counter(s.exec(select(PolicyDecisionRecord.outcome)).all())
        votes = Counter((v.actor, v.role, v.verdict) for v in s.exec(select(ApprovalVote)))
        calls = s.exec(select(ToolCallRecord.status)).all()
    decisions = eu["sections"]["accuracy_robustness"]["policy_decisions"]
    assert decisions["total"] == sum(outcomes.values()) > 0
    assert decisions["by_outcome"] == dict(outcomes)
    assert iso["sections"]["monitoring_records"]["policy_decisions"] == decisions
    oversight = eu["sections"]["human_oversight"]
    assert oversight["approvals"]["by_status"] == {"approved": 1, "rejected": 1}
    assert oversight["approvals"]["approval_rate"] == 0.5
    assert {
        (v["actor"], v["role"], v["verdict"]): v["count"] for v in oversight["approvals"]["votes"]
    } == votes
    # The thresholds and roles are the bundle's, not a copy of the docs.
    limits = stack.services.policy.data("autopilot/approval/limits")
    assert oversight["thresholds"]["vp_arr"] == limits["vp_arr"]
    assert {r["role"] for r in oversight["roles"]} == set(limits["roles"])
    tool_calls = eu["sections"]["accuracy_robustness"]["tool_calls"]
    assert tool_calls["calls"] == len(calls) and tool_calls["failed"] == calls.count("failed")
    assert eu["sections"]["logging"]["audit"]["chain_intact"] is True
    assert eu["sections"]["logging"]["audit"]["entries"] > 0

    # No bench results in this data dir: an explicit gap, not an empty section.
    assert "bench.no_results" in gap_codes(eu)
    bench = stack.settings.data_dir / "bench"
    bench.mkdir()
    (bench / "e2e-20261204T000000.json").write_text(json.dumps({"runs": 200, "p95_ms": 812.5}))
    export(ctx, "eu-ai-act", out)
    eu = exported(out, "eu-ai-act")
    assert "bench.no_results" not in gap_codes(eu)
    (result,) = eu["sections"]["accuracy_robustness"]["bench"]
    assert result["bench"] == "e2e" and result["figures"]["p95_ms"] == 812.5

    planners = cards["sections"]["planners"]
    assert planners["llm_in_use"] is False
    assert [c["kind"] for c in planners["configurations"]] == ["offline"]
    assert cards["sections"]["health_model"]["version"]
    assert "model.no_card_record" in gap_codes(cards)  # the Compliance agent has not run


async def test_access_request_lists_exactly_that_contacts_decisions(
    stack: Stack, tmp_path: Path
) -> None:
    await approve_then_reject(stack)
    with Session(stack.db) as s:
        sent = s.exec(select(ActionRecord).where(col(ActionRecord.recipient).is_not(None))).all()
        assert sent
        account_id, email = sent[0].account_id, sent[0].recipient
        contact = s.exec(
            select(Contact).where(Contact.account_id == account_id, Contact.email == email)
        ).one()
        other = s.exec(
            select(Contact).where(Contact.account_id == account_id, Contact.email != email)
        ).first()
        expected = sorted(a.run_key for a in sent if a.recipient == email)
    ctx = context(stack)
    export(ctx, "admt", tmp_path / "a", contact_id=contact.id)
    body = exported(tmp_path / "a", "admt")
    access = body["sections"]["access_request"]
    assert access["contact_id"] == contact.id
    assert [d["run_key"] for d in access["decisions"]] == expected
    assert access["count"] == len(expected)
    statuses = {d["run_key"]: d["outcome"] for d in access["decisions"]}
    with Session(stack.db) as s:
        assert statuses == {k: s.get(ActionRecord, k).status for k in expected}  # type: ignore[union-attr]
    assert all(d["logic"] and d["human_review"] for d in access["decisions"])
    # The email was approved by the account's CSM: the response names the reviewer.
    email_key = next(a.run_key for a in sent if a.recipient == email and a.tool == "send_email")
    review = next(d["human_review"] for d in access["decisions"] if d["run_key"] == email_key)
    assert review == f"approved: approve by {stack.owner(account_id)} (csm)"

    assert other is not None
    export(ctx, "admt", tmp_path / "b", contact_id=other.id)
    assert exported(tmp_path / "b", "admt")["sections"]["access_request"]["decisions"] == []
    with pytest.raises(ExportError, match="--contact"):
        export(ctx, "admt", tmp_path / "c", contact_id="nobody")


def account_tables() -> set[str]:
    """Every table of the store that holds rows keyed by an account."""
    return {t.name for t in SQLModel.metadata.sorted_tables if "account_id" in t.columns}


async def test_account_export_is_complete_and_round_trips(stack: Stack, tmp_path: Path) -> None:
    await approve_then_reject(stack)
    with Session(stack.db) as s:
        account_id = s.exec(select(ActionRecord.account_id)).first()
    assert account_id is not None
    ctx = context(stack)
    first = tmp_path / "first"
    assert export(ctx, "data-act", first, account_id=account_id).valid
    body = exported(first, "data-act")
    data = json.loads((first / data_act.DATA_FILE).read_text())

    # Complete: every account-keyed table is exported, with all of that account's rows.
    models = {m.__tablename__: (name, m) for name, m, _ in data_act.tables()}  # type: ignore[attr-defined]
    assert account_tables() <= set(models)
    with Session(stack.db) as s:
        for table in account_tables():
            name, model = models[table]
            rows = s.exec(select(model).where(model.account_id == account_id)).all()
            assert len(data["tables"][name]) == len(rows), table
    counts = {t["table"]: t["rows"] for t in body["sections"]["tables"]["tables"]}
    assert counts["action"] == 2 and counts["approval_vote"] == 2 and counts["tool_call"] >= 1
    assert (first / "csv" / "action.csv").read_text().count("\n") == 3  # header + 2 rows

    fresh = make_engine(f"sqlite:///{tmp_path / 'fresh.db'}")
    imported = data_act.import_account(fresh, first)
    assert imported == {name: len(rows) for name, rows in data["tables"].items()}
    again = tmp_path / "again"
    export(ExportContext(**{**ctx.__dict__, "db": fresh}), "data-act", again, account_id=account_id)
    assert (again / data_act.DATA_FILE).read_bytes() == (first / data_act.DATA_FILE).read_bytes()
    for f in sorted((first / "csv").iterdir()):
        assert (again / "csv" / f.name).read_bytes() == f.read_bytes(), f.name
    with pytest.raises(data_act.ImportConflict):
        data_act.import_account(fresh, first)


async def test_cli_exports_every_framework_with_a_json_summary(
    stack: Stack, tmp_path: Path
) -> None:
    await approve_then_reject(stack)
    with Session(stack.db) as s:
        account_id = s.exec(select(ActionRecord.account_id)).first()
    out = tmp_path / "cli"
    done = cli(stack, "compliance", "export", "--framework", "all", "--account", str(account_id),
               "--out", str(out), "--json")  # fmt: skip
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert summary["ok"] is True
    assert [e["framework"] for e in summary["exports"]] == list(FRAMEWORKS)
    assert all(e["schema_valid"] and e["files"] for e in summary["exports"])
    eu = next(e for e in summary["exports"] if e["framework"] == "eu-ai-act")
    assert "bench.no_results" in {g["code"] for g in eu["gaps"]}
    bad = cli(stack, "compliance", "export", "--framework", "data-act", "--out", str(out), "--json")
    assert bad.returncode == 2 and "--account" in json.loads(bad.stdout)["error"]
