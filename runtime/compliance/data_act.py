"""Data Act / GDPR portability: every row the store holds about one account, as one JSON
file (`account.json`, what `compliance import-account` reads back) and one CSV per table.

Completeness is by construction: the tables are listed here with the query that finds an
account's rows, and the round-trip test exports, imports into a fresh store and exports
again, expecting identical bytes. Audit entries are copies: their hash chain verifies in
the source store, not in a store they are imported into."""

from __future__ import annotations

import csv
import importlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sqlalchemy.engine import Engine
from sqlmodel import Session, SQLModel, col, select

from autopilot.runtime.compliance import evidence as ev
from autopilot.runtime.compliance.render import Document
from autopilot.runtime.store.accounts import Account, Contact
from autopilot.runtime.store.actions import (
    ActionRecord,
    AttributedRevenue,
    PolicyDecisionRecord,
    SupervisorConflict,
)
from autopilot.runtime.store.approvals import Approval, ApprovalComment, ApprovalVote
from autopilot.runtime.store.audit import AuditEntry
from autopilot.runtime.store.compliance import AdmtDecision, AdmtNotice, ComplianceGap, OptOutSeen
from autopilot.runtime.store.customer import (
    AccountDay,
    AccountScore,
    Contract,
    CostEntry,
    RiskAlert,
    Subscription,
)
from autopilot.runtime.store.events import Event, EventDispatch
from autopilot.runtime.store.mail import ReceivedMail
from autopilot.runtime.store.outbox import CsmTask, InAppMessage
from autopilot.runtime.store.outcomes import OutcomeCheck
from autopilot.runtime.store.tool_calls import ToolCallRecord

FORMAT = "autopilot-account-export/1"
DATA_FILE = "account.json"

Rows = Callable[[Session, str, dict[str, list[SQLModel]]], list[SQLModel]]


def _by_account(model: Any) -> Rows:
    return lambda s, account_id, _: list(
        s.exec(select(model).where(model.account_id == account_id))
    )


def _by_key(model: Any, column: str, table: str, attr: str) -> Rows:
    """The rows of `model` whose `column` is the `attr` of a row already found in `table`."""

    def rows(s: Session, _: str, found: dict[str, list[SQLModel]]) -> list[SQLModel]:
        keys = sorted({getattr(r, attr) for r in found.get(table, [])})
        return list(s.exec(select(model).where(col(getattr(model, column)).in_(keys))))

    return rows


def _consent() -> list[tuple[str, Any, Rows]]:
    try:
        model = importlib.import_module("autopilot.runtime.store.consent").ConsentRecord
    except (ImportError, AttributeError):
        return []  # an older store: no consent table to export
    return [("consent_record", model, _by_account(model))]


def tables() -> list[tuple[str, Any, Rows]]:
    """(name, model, rows of one account) in import order: parents before children."""
    return [
        ("account", Account, lambda s, a, _: [r] if (r := s.get(Account, a)) else []),
        ("contact", Contact, _by_account(Contact)),
        ("account_day", AccountDay, _by_account(AccountDay)),
        ("contract", Contract, _by_account(Contract)),
        ("subscription", Subscription, _by_account(Subscription)),
        ("cost_entry", CostEntry, _by_account(CostEntry)),
        ("account_score", AccountScore, _by_account(AccountScore)),
        ("risk_alert", RiskAlert, _by_account(RiskAlert)),
        ("event", Event, _by_account(Event)),
        ("event_dispatch", EventDispatch, _by_account(EventDispatch)),
        ("action", ActionRecord, _by_account(ActionRecord)),
        ("policy_decision", PolicyDecisionRecord, _by_account(PolicyDecisionRecord)),
        ("approval", Approval, _by_account(Approval)),
        ("approval_vote", ApprovalVote, _by_key(ApprovalVote, "approval_id", "approval", "id")),
        (
            "approval_comment",
            ApprovalComment,
            _by_key(ApprovalComment, "approval_id", "approval", "id"),
        ),
        (
            "tool_call",
            ToolCallRecord,
            _by_key(ToolCallRecord, "idempotency_key", "action", "run_key"),
        ),
        ("outcome_check", OutcomeCheck, _by_account(OutcomeCheck)),
        ("supervisor_conflict", SupervisorConflict, _by_account(SupervisorConflict)),
        ("attributed_revenue", AttributedRevenue, _by_account(AttributedRevenue)),
        ("admt_decision", AdmtDecision, _by_account(AdmtDecision)),
        ("admt_notice", AdmtNotice, _by_account(AdmtNotice)),
        ("opt_out_seen", OptOutSeen, _by_account(OptOutSeen)),
        ("compliance_gap", ComplianceGap, _by_account(ComplianceGap)),
        *_consent(),
        ("in_app_message", InAppMessage, _by_account(InAppMessage)),
        ("csm_task", CsmTask, _by_account(CsmTask)),
        ("mail", ReceivedMail, _by_key(ReceivedMail, "rcpt_to", "contact", "email")),
        ("audit_entry", AuditEntry, _by_key(AuditEntry, "workflow_id", "action", "workflow_id")),
    ]


def _pk(model: Any, row: dict[str, Any]) -> tuple[str, ...]:
    return tuple(str(row[c.name]) for c in model.__table__.primary_key.columns)


class UnknownAccount(LookupError):
    """`--account` names no account in the store."""


def account_data(db: Engine, account_id: str) -> dict[str, Any]:
    found: dict[str, list[SQLModel]] = {}
    with Session(db) as s:
        if s.get(Account, account_id) is None:
            raise UnknownAccount(f"--account: no account {account_id!r}")
        for name, _, rows in tables():
            found[name] = rows(s, account_id, found)
    out: dict[str, list[dict[str, Any]]] = {}
    for name, model, _ in tables():
        dumped = [r.model_dump(mode="json") for r in found[name]]
        out[name] = sorted(dumped, key=lambda r, m=model: _pk(m, r))
    return {"format": FORMAT, "account_id": account_id, "tables": out}


def _csv(path: Path, model: Any, rows: list[dict[str, Any]]) -> None:
    cols = list(model.model_fields)
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(cols)
        for r in rows:
            w.writerow(
                [
                    json.dumps(v, sort_keys=True)
                    if isinstance(v, dict | list)
                    else ("" if v is None else v)
                    for v in (r.get(c) for c in cols)
                ]
            )


def build(ctx: ev.ExportContext, *, account_id: str, out: Path) -> Document:
    """Write account.json and the CSVs into `out`; the document describes them."""
    data = account_data(ctx.db, account_id)
    out.mkdir(parents=True, exist_ok=True)
    (out / DATA_FILE).write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    (out / "csv").mkdir(exist_ok=True)
    for name, model, _ in tables():
        _csv(out / "csv" / f"{name}.csv", model, data["tables"][name])
    doc = Document(
        "data-act",
        f"Data export of account {account_id} (Data Act / GDPR Art. 20)",
        ctx.now,
        ctx.source(),
    )
    doc.add(
        "subject",
        "Subject",
        {
            "account_id": account_id,
            "format": FORMAT,
            "import_with": f"autopilot compliance import-account {out}",
        },
    )
    doc.add(
        "tables",
        "Tables",
        {
            "tables": [
                {
                    "table": name,
                    "rows": len(data["tables"][name]),
                    "columns": len(model.model_fields),
                    "csv": f"csv/{name}.csv",
                }
                for name, model, _ in tables()
            ]
        },
    )
    doc.add(
        "files",
        "Files",
        {
            "data": DATA_FILE,
            "csv_dir": "csv",
            "rows_total": sum(len(v) for v in data["tables"].values()),
        },
    )
    if not any(n == "consent_record" for n, _, _ in tables()):
        doc.gap("data.no_consent_table", "tables", "this store has no consent records table")
    if data["tables"]["audit_entry"]:
        doc.gap(
            "data.audit_copies",
            "tables",
            "audit entries are copies: their chain verifies only in the source store",
        )
    return doc


class ImportConflict(ValueError):
    """A row of the export already exists in the target store."""


def import_account(db: Engine, folder: Path) -> dict[str, int]:
    """Insert every row of `folder/account.json` in one transaction: all or nothing."""
    path = folder / DATA_FILE
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise ValueError(f"{path}: {err}") from err
    if data.get("format") != FORMAT:
        raise ValueError(f"{path}: format: expected {FORMAT!r}, got {data.get('format')!r}")
    counts: dict[str, int] = {}
    with Session(db) as s:
        if s.get(Account, data["account_id"]) is not None:
            raise ImportConflict(f"account_id: {data['account_id']!r} is already in the store")
        for name, model, _ in tables():
            rows = data["tables"].get(name, [])
            for i, row in enumerate(rows):
                try:
                    s.add(model.model_validate(row))
                except ValueError as err:
                    raise ValueError(f"{path}: tables.{name}[{i}]: {err}") from err
            s.flush()  # parents exist before their children reference them
            counts[name] = len(rows)
        s.commit()
    return counts
