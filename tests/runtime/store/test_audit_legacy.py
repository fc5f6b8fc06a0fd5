"""A trail written before per-organisation chains (revision 0005) still verifies after
the migration, with its old checkpoint: no hash was recomputed, and an edit of an old
entry is still named. The old entries are written here with the hash formulas of
that time, spelled out, not with today's code."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlmodel import Session, select

from autopilot.runtime.audit import keys
from autopilot.runtime.audit.checkpoints import checkpoint
from autopilot.runtime.audit.keys import TrustedKeys
from autopilot.runtime.audit.verify import verify
from autopilot.runtime.contracts.audit import AuditEvent
from autopilot.runtime.privacy.erase import erase_contact
from autopilot.runtime.store import audit, migrations
from autopilot.runtime.store.accounts import Account, Contact
from autopilot.runtime.store.audit import AuditEntry
from autopilot.runtime.store.db import connect, make_engine

EMAIL = "ana.lee@acme.example"
T0 = datetime(2026, 11, 1, 9, 0, tzinfo=UTC)


def old_hash(value: dict[str, Any]) -> str:
    return hashlib.sha256(
        json.dumps(value, sort_keys=True, separators=(",", ":"), default=str).encode()
    ).hexdigest()


def old_rows() -> list[dict[str, Any]]:
    """Five entries as revision 0005 wrote them: one from before decision digests (hashed
    over its payload), then with digests; entry 2 mentions the contact, entry 3's payload
    was erased then, vouched for by the `erase` entry 5 (by its seal of that time)."""
    rows: list[dict[str, Any]] = []
    prev = "0" * 64
    for n in range(1, 6):
        to = {2: EMAIL, 3: "bo@acme.example"}.get(n, "x@y.example")
        fields = {"workflow_id": f"wf-{n}", "run_key": f"wf-{n}/e/0", "step": "execute",
                  "actor": "agent:x", "input_hash": "a" * 64,
                  "decision": {"status": "executed", "to": to},
                  "bundle_hash": "b" * 64, "spec_hash": "c" * 64}  # fmt: skip
        if n == 5:
            seal = old_hash(
                {**{k: v for k, v in rows[2].items() if k != "at"}, "at": rows[2]["at"].isoformat()}
            )
            fields |= {"workflow_id": "privacy", "run_key": "privacy/erase/1", "step": "erase",
                       "decision": {"tombstones": {"3": seal}}}  # fmt: skip
        at = T0 + timedelta(minutes=n)
        if n == 1:
            digest = None
            hashed = old_hash({"prev": prev, "at": at.isoformat(), **fields})
        else:
            digest = old_hash(fields["decision"])
            rest = {k: v for k, v in fields.items() if k != "decision"}
            hashed = old_hash({"prev": prev, "at": at.isoformat(), "decision_hash": digest, **rest})
        # seq comes from the store: 1-5 in this order.
        rows.append(
            {**fields, "at": at, "decision_hash": digest, "prev_hash": prev, "hash": hashed}
        )
        prev = hashed
        if n == 3:  # erased: the tombstone keeps the digest (and so the hash)
            tombstone = {"status": "executed", "to": "[erased]"}
            rows[2]["decision"] = {**tombstone, "erased": {"by": "erase", "ref": "privacy/erase/1"}}
    return rows


def test_a_trail_written_before_the_migration_still_verifies_and_tampering_is_named(
    database_url: str, tmp_path: Path
) -> None:
    key = keys.load_or_create(tmp_path / "audit-ed25519.pem")
    trusted = TrustedKeys({key.key_id: key.public})
    old = connect(database_url)
    migrations.upgrade(old, "0005")
    rows = old_rows()
    cp = {"seq": 5, "head_hash": rows[-1]["hash"], "entries": 5, "at": T0 + timedelta(hours=1),
          "key_id": key.key_id, "prev": "0" * 64}  # fmt: skip
    message = old_hash({**cp, "at": cp["at"].isoformat()}).encode()
    meta = sa.MetaData()
    entries = sa.Table("auditentry", meta, autoload_with=old)
    checkpoints = sa.Table("auditcheckpoint", meta, autoload_with=old)
    erasures = sa.Table("erasure", meta, autoload_with=old)
    with old.begin() as conn:
        conn.execute(sa.insert(erasures), [{"at": T0, "actor": "dpo", "contact_hash": "d" * 64,
                     "reason": "", "counts": {}, "audit_run_key": "privacy/erase/1"}])  # fmt: skip
        conn.execute(sa.insert(entries), rows)
        conn.execute(sa.insert(checkpoints), [{**cp, "signature": key.sign(message)}])
    old.dispose()

    db = make_engine(database_url)  # migrated to the newest revision
    with Session(db) as s:
        migrated = list(s.exec(select(AuditEntry).order_by(AuditEntry.seq)))  # pyright: ignore[reportArgumentType]
        report = verify(s, trusted)
    assert [(r.org_id, r.org_seq) for r in migrated] == [(None, None)] * 5
    assert [r.hash for r in migrated] == [r["hash"] for r in rows]  # nothing recomputed
    assert report.intact, report.findings
    legacy = report.chain(None)
    assert (legacy.verified, legacy.signed_seq, legacy.unsigned, legacy.erased) == (5, 5, 0, 1)

    # New entries go into the organisation's chain; the legacy chain is left as it was.
    with Session(db) as s:
        s.add(Account(id="acc-1", name="Acme", segment="smb", region="eu", arr=1.0,
                      seats_purchased=1, seats_used=1, active_users_30d=1, logins_30d=1,
                      renewal_date=date(2027, 1, 1), owner_csm="demo:dana"))  # fmt: skip
        s.add(Contact(id="c-1", account_id="acc-1", name="Ana Lee", email=EMAIL, role="x"))
        s.commit()
    new = AuditEvent(
        workflow_id="wf-9",
        run_key="wf-9/e/0",
        step="plan",
        actor="agent:x",
        input_hash="a" * 64,
        decision={},
        bundle_hash="b" * 64,
        spec_hash="c" * 64,
    )
    assert audit.append(db, [new]) == 1
    assert [c.org_id for c in checkpoint(db, key)] == ["demo"]  # the legacy head did not move
    # Erasing the contact tombstones legacy entry 2, vouched for in the legacy chain.
    erase_contact(db, "c-1", actor="dpo")
    with Session(db) as s:
        report = verify(s, trusted)
        erased = s.exec(select(AuditEntry).where(AuditEntry.seq == 2)).one()
    assert report.intact, report.findings
    assert [c.org_id for c in report.chains] == [None, "demo"]
    assert report.chain(None).erased == 2 and EMAIL not in json.dumps(erased.decision)

    with Session(db) as s:
        s.connection().execute(sa.text("UPDATE auditentry SET actor = 'mallory' WHERE seq = 4"))
        s.commit()
    with Session(db) as s:
        first = verify(s, trusted).findings[0]
    assert (first.code, first.org_id, first.seq) == ("audit.entry_altered", None, 4)
    db.dispose()
