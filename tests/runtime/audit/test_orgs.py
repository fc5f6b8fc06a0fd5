"""Each organisation has a chain of its own: tampering in org A's chain is named with
org A (and the entry's number in A's chain) while org B's verifies; a checkpoint of A
that does not verify is named with A; erasing a contact of A leaves B's chain untouched.
Every tampering is done directly in the database, without the signing key."""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import text, update
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from autopilot.runtime.audit import keys
from autopilot.runtime.audit.checkpoints import checkpoint
from autopilot.runtime.audit.keys import SigningKey
from autopilot.runtime.audit.verify import TrailReport
from autopilot.runtime.config import Settings
from autopilot.runtime.privacy import retention
from autopilot.runtime.privacy.erase import erase_contact
from autopilot.runtime.store import audit
from autopilot.runtime.store.accounts import Account, Contact
from autopilot.runtime.store.audit import AuditCheckpoint, AuditEntry, checkpoint_message
from tests.conftest import REPO
from tests.runtime.audit.conftest import check, event

A, B = "org-a", "org-b"


def two_orgs(db: Engine, key: SigningKey) -> None:
    """Three runs of each organisation, interleaved (two entries each: org_seq 1-6),
    a checkpoint of each chain at entry 4, then one more run each (entries 5-6)."""
    for run in range(1, 3):
        for org in (A, B):
            audit.append(db, [e.model_copy(update={"org_id": org}) for e in run_of(org, run)])
    assert {cp.org_id for cp in checkpoint(db, key)} == {A, B}
    for org in (A, B):
        audit.append(db, run_of(org, 3))


def run_of(org: str, run: int) -> list:  # type: ignore[type-arg]
    return [
        e.model_copy(
            update={"org_id": org, "run_key": f"{org}/{run}", "workflow_id": f"{org}-{run}"}
        )
        for e in (event(run, "plan"), event(run, "record"))
    ]


def row_id(db: Engine, org: str, n: int) -> int:
    """The stored seq of entry `n` of `org`'s chain."""
    with Session(db) as s:
        q = select(AuditEntry.seq).where(AuditEntry.org_id == org, AuditEntry.org_seq == n)
        seq = s.exec(q).one()
    assert seq is not None
    return seq


def sql(db: Engine, statement: str, **params: object) -> None:
    with Session(db) as s:
        s.connection().execute(text(statement), params)
        s.commit()


def only_a_broken(report: TrailReport) -> tuple[str, int | None]:
    assert [c.org_id for c in report.chains] == [A, B]
    assert report.chain(B).intact and report.chain(B).verified == 6
    assert not report.chain(A).intact
    first = report.findings[0]
    assert first.org_id == A
    return first.code, first.seq


def test_two_interleaved_organisations_each_have_an_unbroken_chain(
    db: Engine, key: SigningKey
) -> None:
    two_orgs(db, key)
    with Session(db) as s:
        rows = list(s.exec(select(AuditEntry).order_by(col(AuditEntry.seq))))
    assert [r.org_id for r in rows[:4]] == [A, A, B, B]  # stored interleaved
    for org in (A, B):
        mine = [r for r in rows if r.org_id == org]
        assert [r.org_seq for r in mine] == [1, 2, 3, 4, 5, 6]
        assert mine[0].prev_hash == audit.GENESIS
        assert all(b.prev_hash == a.hash for a, b in itertools.pairwise(mine))
    report = check(db, key)
    assert report.intact and report.verified == 12
    assert [(c.org_id, c.entries, c.signed_seq, c.unsigned) for c in report.chains] == [
        (A, 6, 4, 2),
        (B, 6, 4, 2),
    ]


def test_one_byte_changed_in_a_is_named_with_a(db: Engine, key: SigningKey) -> None:
    two_orgs(db, key)
    sql(
        db,
        "UPDATE auditentry SET decision = replace(decision, 'executed', 'executee') WHERE seq = :s",
        s=row_id(db, A, 3),
    )
    assert only_a_broken(check(db, key)) == ("audit.entry_altered", 3)


def test_a_deleted_row_of_a_is_named_missing_in_a(db: Engine, key: SigningKey) -> None:
    two_orgs(db, key)
    sql(db, "DELETE FROM auditentry WHERE seq = :s", s=row_id(db, A, 3))
    assert only_a_broken(check(db, key)) == ("audit.entry_missing", 3)


@pytest.mark.parametrize("column", ["seq", "org_seq"])
def test_two_swapped_rows_of_a_are_named_reordered_in_a(
    db: Engine, key: SigningKey, column: str
) -> None:
    two_orgs(db, key)
    third, fourth = row_id(db, A, 3), row_id(db, A, 4)
    field = getattr(AuditEntry, column)
    with Session(db) as s:
        # Swap where they are stored, or their numbers (through a free value: both are unique).
        values = {"seq": (third, fourth), "org_seq": (3, 4)}[column]
        for where, new in ((third, -1), (fourth, values[0]), (-1, values[1])):
            s.connection().execute(
                update(AuditEntry).where(col(AuditEntry.seq) == where).values({field: new})
            )
        s.commit()
    assert only_a_broken(check(db, key)) == ("audit.entry_reordered", 3)


def test_entries_moved_to_another_organisation_are_named(db: Engine, key: SigningKey) -> None:
    """The organisation is hashed with each entry: relabelling a whole chain (its links
    intact) does not make it another organisation's."""
    two_orgs(db, key)
    sql(db, "UPDATE auditentry SET org_id = 'org-c' WHERE org_id = :o", o=B)
    report = check(db, key)
    first = next(f for f in report.findings if f.org_id == "org-c")
    assert (first.code, first.seq) == ("audit.entry_altered", 1)
    assert report.chain(A).intact


def test_the_newest_rows_of_a_cut_are_named_by_a_checkpoint_of_a(
    db: Engine, key: SigningKey
) -> None:
    two_orgs(db, key)
    assert checkpoint(db, key)  # both heads signed at entry 6
    sql(db, "DELETE FROM auditentry WHERE org_id = :o AND org_seq > 4", o=A)
    report = check(db, key)
    assert only_a_broken(report) == ("audit.truncated", 5)
    assert report.chain(A).verified == 4  # the chain alone is a valid, shorter chain


def test_a_checkpoint_of_a_whose_signature_fails_is_named_with_a(
    db: Engine, key: SigningKey, tmp_path: Path
) -> None:
    two_orgs(db, key)
    mallory = keys.generate(tmp_path / "mallory.pem")
    with Session(db) as s:
        cp = s.exec(select(AuditCheckpoint).where(AuditCheckpoint.org_id == A)).one()
        cp.entries = 5  # a claim re-signed with a key the verifier does not hold for it
        cp.signature = mallory.sign(
            checkpoint_message(
                org_id=cp.org_id, seq=cp.seq, head_hash=cp.head_hash, entries=cp.entries,
                at=cp.at, key_id=cp.key_id, prev=cp.prev,
            )
        )  # fmt: skip
        s.add(cp)
        s.commit()
        cp_id = cp.id
    report = check(db, key)
    assert [(f.code, f.org_id, f.checkpoint) for f in report.findings] == [
        ("audit.checkpoint_signature_invalid", A, cp_id)
    ]


def test_a_checkpoint_of_a_cannot_vouch_for_b(db: Engine, key: SigningKey) -> None:
    """A checkpoint names its organisation in what it signs: moved to B's chain (with
    B's head, its signature kept), it fails."""
    two_orgs(db, key)
    with Session(db) as s:
        a_cp = s.exec(select(AuditCheckpoint).where(AuditCheckpoint.org_id == A)).one()
        b_cp = s.exec(select(AuditCheckpoint).where(AuditCheckpoint.org_id == B)).one()
        b_cp.signature, b_cp.at = a_cp.signature, a_cp.at
        b_cp.head_hash = s.exec(
            select(AuditEntry.hash).where(AuditEntry.org_id == A, AuditEntry.org_seq == 4)
        ).one()
        s.add(b_cp)
        s.commit()
    codes = {(f.code, f.org_id) for f in check(db, key).findings}
    assert ("audit.checkpoint_signature_invalid", B) in codes


EMAIL = "ana.lee@acme.example"


def contact_in(db: Engine, org: str, n: int) -> str:
    with Session(db) as s:
        s.add(Account(id=f"acc-{n}", org_id=org, name="Acme", segment="smb", region="eu", arr=1.0,
                      seats_purchased=1, seats_used=1, active_users_30d=1, logins_30d=1,
                      renewal_date=date(2027, 1, 1), owner_csm="demo:dana"))  # fmt: skip
        s.add(Contact(id=f"c-{n}", account_id=f"acc-{n}", name="Ana Lee", email=EMAIL, role="x"))
        s.commit()
    return f"c-{n}"


def test_erasing_a_contact_of_a_leaves_b_untouched_and_both_verify(
    db: Engine, key: SigningKey
) -> None:
    two_orgs(db, key)
    a_contact = contact_in(db, A, 1)
    contact_in(db, B, 2)  # the same address, in B's records
    for org in (A, B):
        mail = event(9, "execute").model_copy(
            update={"org_id": org, "run_key": f"{org}/mail", "decision": {"to": EMAIL, "n": 1}}
        )
        audit.append(db, [mail])
    with Session(db) as s:
        b_before = [
            r.model_dump() for r in s.exec(select(AuditEntry).where(AuditEntry.org_id == B))
        ]

    result = erase_contact(db, a_contact, actor="dpo")

    with Session(db) as s:
        a_rows = list(
            s.exec(select(AuditEntry).where(AuditEntry.org_id == A).order_by(col(AuditEntry.seq)))
        )
        b_after = [r.model_dump() for r in s.exec(select(AuditEntry).where(AuditEntry.org_id == B))]
    assert b_after == b_before  # not an entry of B's chain changed, none added
    assert result.counts["auditentry"] == 1 and EMAIL not in json.dumps(
        [r.decision for r in a_rows]
    )
    assert a_rows[-1].step == "erase" and a_rows[-1].org_seq == 8  # in A's chain
    report = check(db, key)
    assert report.intact, report.findings
    assert (report.chain(A).erased, report.chain(B).erased) == (1, 0)


def test_retention_vouches_in_each_organisations_chain_and_both_verify(
    db: Engine, key: SigningKey, tmp_path: Path
) -> None:
    two_orgs(db, key)
    settings = Settings(data_dir=tmp_path, retention_days_audit_payloads=1)
    done = retention.run(db, settings, apply=True, now=datetime.now(UTC) + timedelta(days=2))
    assert done.audit_payloads == 12 and len(done.audit_run_keys) == 2
    with Session(db) as s:
        for org in (A, B):
            q = select(AuditEntry).where(AuditEntry.org_id == org).order_by(col(AuditEntry.seq))
            *_, last = s.exec(q).all()
            assert (last.step, last.org_seq, len(last.decision["tombstones"])) == (
                "retention",
                7,
                6,
            )
    report = check(db, key)
    assert report.intact, report.findings
    assert (report.chain(A).erased, report.chain(B).erased) == (6, 6)


def test_the_cli_verifies_one_organisation_or_all_and_names_the_broken_one(
    db: Engine, key: SigningKey, tmp_path: Path
) -> None:
    two_orgs(db, key)
    sql(db, "DELETE FROM auditentry WHERE seq = :s", s=row_id(db, B, 2))
    env = {**os.environ, "AUTOPILOT_DATA_DIR": str(tmp_path),
           "AUTOPILOT_DATABASE_URL": f"sqlite:///{tmp_path / 'autopilot.db'}"}  # fmt: skip

    def verify(*args: str) -> tuple[int, dict]:  # type: ignore[type-arg]
        done = subprocess.run(
            [sys.executable, "-m", "autopilot.runtime.cli.main", "audit", "verify", "--json", *args],
            capture_output=True, text=True, env=env, cwd=REPO, timeout=120, check=False,
        )  # fmt: skip
        return done.returncode, json.loads(done.stdout)

    code, out = verify()
    assert code == 1 and not out["ok"]
    assert [(c["org_id"], c["ok"]) for c in out["chains"]] == [(A, True), (B, False)]
    assert (out["first"]["org_id"], out["first"]["code"], out["first"]["seq"]) == (
        B, "audit.entry_missing", 2,
    )  # fmt: skip
    code, out = verify("--org", A)
    assert code == 0 and out["ok"] and [c["org_id"] for c in out["chains"]] == [A]
