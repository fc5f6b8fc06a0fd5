"""Retention on a real SQLite store and the CLI: the dry run counts what `--apply` then
deletes, rows in use are kept, and the audit chain loses payloads, never entries."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.engine import Engine
from sqlmodel import Session, func, select

from autopilot.runtime.audit.keys import TrustedKeys
from autopilot.runtime.audit.verify import verify
from autopilot.runtime.config import Settings
from autopilot.runtime.privacy.retention import run
from autopilot.runtime.store import audit
from autopilot.runtime.store.accounts import Account
from autopilot.runtime.store.audit import AuditEntry
from autopilot.runtime.store.db import make_engine
from autopilot.runtime.store.events import Event
from autopilot.runtime.store.mail import ReceivedMail
from tests.conftest import REPO
from tests.runtime.audit.conftest import event

NOW = datetime.now(UTC)  # the audit log stamps entries with the real clock


def seeded(tmp_path: Path) -> Engine:
    """Events 10 and 100 days old (one old one not yet dispatched), mail 10 and 100 days
    old, and six audit entries written today."""
    db = make_engine(f"sqlite:///{tmp_path / 'autopilot.db'}")
    with Session(db) as s:
        s.add(Account(id="acc-1", name="Acme", segment="smb", region="eu", arr=1.0,
                      seats_purchased=1, seats_used=1, active_users_30d=1, logins_30d=1,
                      renewal_date=date(2027, 1, 1), owner_csm="demo:dana"))  # fmt: skip
        s.commit()
        for age, dispatched in ((10, True), (100, True), (100, True), (100, False)):
            at = NOW - timedelta(days=age)
            s.add(Event(account_id="acc-1", type="nps", occurred_at=at, received_at=at,
                        payload={"score": 3}, dispatched=dispatched))  # fmt: skip
        for age in (10, 100):
            at = NOW - timedelta(days=age)
            s.add(ReceivedMail(message_id=f"m{age}", mail_from="a@x", rcpt_to="b@y", subject="s",
                               body="b", raw="r", received_at=at))  # fmt: skip
        s.commit()
    for run_no in (1, 2, 3):
        audit.append(db, [event(run_no, "plan"), event(run_no, "record")])
    return db


def count(db: Engine, model: type) -> int:
    with Session(db) as s:
        return s.exec(select(func.count()).select_from(model)).one()


def test_the_dry_run_counts_what_apply_deletes_and_the_chain_keeps_its_entries(
    tmp_path: Path,
) -> None:
    db = seeded(tmp_path)
    # Audit payloads older than a day: none now, all six seen from two days on.
    settings = Settings(
        data_dir=tmp_path,
        retention_days_audit_payloads=1,
        retention_days_events=30,
        retention_days_mail=30,
    )
    later = NOW + timedelta(days=2)
    dry = run(db, settings, apply=False, now=NOW)
    assert (dry.tables["event"], dry.tables["receivedmail"]) == (2, 1)  # not the undispatched
    assert dry.audit_payloads == 0  # written today: not yet past retention at NOW
    assert (count(db, Event), count(db, ReceivedMail)) == (4, 2)  # a dry run deletes nothing
    assert run(db, settings, apply=False, now=later).audit_payloads == 6

    seen: list[tuple[str, int, int]] = []  # what the CLI's progress bar is fed
    done = run(db, settings, apply=True, now=NOW, progress=lambda *p: seen.append(p))
    assert done.tables == dry.tables
    assert (count(db, Event), count(db, ReceivedMail)) == (2, 1)
    assert ("event", 2, 2) in seen
    assert run(db, settings, apply=False, now=NOW).tables["event"] == 0

    payloads = run(db, settings, apply=True, now=later)
    assert payloads.audit_payloads == 6 and payloads.audit_run_keys
    rows = list(Session(db).exec(select(AuditEntry)))
    assert len(rows) == 7 and rows[-1].step == "retention"  # entries kept, one added
    assert all(r.decision.get("erased", {}).get("by") == "retention" for r in rows[:6])
    with Session(db) as s:
        report = verify(s, TrustedKeys({}))
    assert report.intact and report.erased == 6
    # The retention entry is never due itself, and nothing is tombstoned twice.
    assert run(db, settings, apply=False, now=later + timedelta(days=365)).audit_payloads == 0


@pytest.mark.parametrize(
    "decision",
    [
        '{"status": "failed"}',  # a payload in place of the tombstone
        '{"erased": {"by": "retention", "ref": "privacy/retention/x"}}',  # another voucher
    ],
)
def test_an_edited_retention_tombstone_is_named(tmp_path: Path, decision: str) -> None:
    db = seeded(tmp_path)
    settings = Settings(data_dir=tmp_path, retention_days_audit_payloads=1)
    run(db, settings, apply=True, now=NOW + timedelta(days=2))
    with Session(db) as s:
        s.connection().execute(
            text("UPDATE auditentry SET decision = :d WHERE seq = 4"), {"d": decision}
        )
        s.commit()
    with Session(db) as s:
        first = verify(s, TrustedKeys({})).findings[0]
    assert (first.code, first.seq) == ("audit.entry_altered", 4)


def test_the_cli_shows_then_applies(tmp_path: Path) -> None:
    seeded(tmp_path)
    env = {
        **os.environ,
        "AUTOPILOT_DATA_DIR": str(tmp_path),
        "AUTOPILOT_DATABASE_URL": f"sqlite:///{tmp_path / 'autopilot.db'}",
        "AUTOPILOT_RETENTION_DAYS_EVENTS": "30",
    }

    def cli(*args: str) -> dict[str, Any]:
        out = subprocess.run(
            [sys.executable, "-m", "autopilot.runtime.cli.main", "privacy", "retention", *args],
            capture_output=True, text=True, env=env, cwd=REPO, timeout=120, check=False,
        )  # fmt: skip
        assert out.returncode == 0, out.stderr
        return json.loads(out.stdout)

    dry = cli("--json")
    assert dry["applied"] is False and dry["tables"]["event"] == 2
    assert "receivedmail" not in dry["tables"]  # no mail retention set: kept for ever
    applied = cli("--apply", "--json")
    assert applied["tables"] == dry["tables"]
    assert cli("--json")["tables"] == {"eventkey": 0, "eventdispatch": 0, "event": 0,
                                       "policydecisionrecord": 0, "toolcallrecord": 0}  # fmt: skip
