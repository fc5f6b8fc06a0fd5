"""`verify` names the first entry edited, deleted, reordered or missing, and a checkpoint
that does not verify. Every tampering is done directly in the database, by someone with
write access to the store and knowledge of the hash function, but not the signing key."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from pathlib import Path

from sqlalchemy import delete, text, update
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from autopilot.runtime.audit import keys
from autopilot.runtime.audit.checkpoints import checkpoint
from autopilot.runtime.audit.keys import SigningKey
from autopilot.runtime.contracts.audit import AuditEvent
from autopilot.runtime.privacy.erase import erase_contact
from autopilot.runtime.store import audit
from autopilot.runtime.store.accounts import Account, Contact
from autopilot.runtime.store.audit import AuditCheckpoint, AuditEntry, checkpoint_message
from tests.runtime.audit.conftest import ORG, append_runs, check, entries, event


def signed_trail(db: Engine, key: SigningKey) -> None:
    """Six entries, a checkpoint at entry 4 and one at entry 6 (the head)."""
    append_runs(db, 1, 2)
    assert checkpoint(db, key)
    append_runs(db, 3, 3)
    assert checkpoint(db, key)
    assert [e.seq for e in entries(db)] == [1, 2, 3, 4, 5, 6]


def sql(db: Engine, statement: str) -> None:
    with Session(db) as s:
        s.connection().execute(text(statement))
        s.commit()


def test_an_untouched_signed_trail_verifies(db: Engine, key: SigningKey) -> None:
    signed_trail(db, key)
    report = check(db, key)
    assert report.intact and report.verified == 6 and report.chain(ORG).signed_seq == 6
    assert report.as_json()["unsigned_entries"] == 0


def test_one_byte_changed_names_that_entry(db: Engine, key: SigningKey) -> None:
    signed_trail(db, key)
    sql(
        db,
        "UPDATE auditentry SET decision = replace(decision, 'executed', 'executee') WHERE seq = 3",
    )
    first = check(db, key).findings[0]
    assert (first.code, first.seq) == ("audit.entry_altered", 3)


def test_a_deleted_row_is_named_missing(db: Engine, key: SigningKey) -> None:
    signed_trail(db, key)
    sql(db, "DELETE FROM auditentry WHERE seq = 3")
    first = check(db, key).findings[0]
    assert (first.code, first.seq) == ("audit.entry_missing", 3)


def test_two_swapped_rows_are_named_reordered(db: Engine, key: SigningKey) -> None:
    signed_trail(db, key)
    with Session(db) as s:
        for old, new in ((3, -1), (4, 3), (-1, 4)):
            s.connection().execute(
                update(AuditEntry).where(col(AuditEntry.seq) == old).values(seq=new)
            )
        s.commit()
    first = check(db, key).findings[0]
    assert (first.code, first.seq) == ("audit.entry_reordered", 3)


def test_the_newest_rows_cut_are_named_by_the_checkpoint(db: Engine, key: SigningKey) -> None:
    signed_trail(db, key)
    sql(db, "DELETE FROM auditentry WHERE seq > 4")
    report = check(db, key)
    assert report.verified == 4  # the chain alone is a valid, shorter chain
    assert [(f.code, f.seq, f.checkpoint) for f in report.findings] == [("audit.truncated", 5, 2)]
    assert not report.intact


def rewrite_from(db: Engine, seq: int) -> None:
    """Edit entry `seq`, then recompute every hash and link after it, as `append` would."""
    with Session(db) as s:
        rows = list(s.exec(select(AuditEntry).order_by(col(AuditEntry.seq))))
        prev = audit.GENESIS
        for row in rows:
            if row.seq == seq:
                row.actor = "user:mallory"
            if row.seq is not None and row.seq >= seq:
                row.prev_hash, row.hash = prev, audit._row_hash(prev, row)
                s.add(row)
            prev = row.hash
        s.commit()


def test_a_wholesale_rewrite_is_caught_by_the_checkpoints(db: Engine, key: SigningKey) -> None:
    signed_trail(db, key)
    rewrite_from(db, 5)
    report = check(db, key)
    assert report.verified == 6  # every link recomputed: the chain alone verifies
    # Checkpoint 1 (entry 4) still holds; checkpoint 2 narrows the edit to entries 5-6.
    assert [(f.code, f.seq, f.checkpoint) for f in report.findings] == [("audit.rewritten", 5, 2)]


def resign(db: Engine, signer: SigningKey, *, claim_key_id: str) -> None:
    """Cut the newest entries and re-sign the newest checkpoint for the shorter head."""
    sql(db, "DELETE FROM auditentry WHERE seq > 4")
    with Session(db) as s:
        cp = s.exec(select(AuditCheckpoint).where(AuditCheckpoint.id == 2)).one()
        head = s.exec(select(AuditEntry).where(AuditEntry.seq == 4)).one()
        cp.seq, cp.head_hash, cp.entries, cp.key_id = 4, head.hash, 4, claim_key_id
        cp.signature = signer.sign(
            checkpoint_message(
                org_id=cp.org_id,
                seq=cp.seq,
                head_hash=cp.head_hash,
                entries=cp.entries,
                at=cp.at,
                key_id=cp.key_id,
                prev=cp.prev,
            )
        )
        s.add(cp)
        s.commit()


def test_a_checkpoint_resigned_with_another_key_fails_its_signature(
    db: Engine, key: SigningKey, tmp_path: Path
) -> None:
    signed_trail(db, key)
    mallory = keys.generate(tmp_path / "mallory.pem")
    resign(db, mallory, claim_key_id=key.key_id)
    codes = [(f.code, f.checkpoint) for f in check(db, key).findings]
    assert codes == [("audit.checkpoint_signature_invalid", 2)]


def test_a_checkpoint_signed_by_an_untrusted_key_is_named(
    db: Engine, key: SigningKey, tmp_path: Path
) -> None:
    signed_trail(db, key)
    mallory = keys.generate(tmp_path / "mallory.pem")
    resign(db, mallory, claim_key_id=mallory.key_id)
    codes = [(f.code, f.checkpoint) for f in check(db, key).findings]
    assert codes == [("audit.checkpoint_key_unknown", 2)]


def test_a_removed_checkpoint_is_named(db: Engine, key: SigningKey) -> None:
    signed_trail(db, key)
    append_runs(db, 4, 4)
    assert checkpoint(db, key)
    with Session(db) as s:
        s.connection().execute(delete(AuditCheckpoint).where(col(AuditCheckpoint.id) == 2))
        s.commit()
    codes = [(f.code, f.checkpoint) for f in check(db, key).findings]
    assert codes == [("audit.checkpoint_missing", 3)]


def test_a_checkpoint_is_written_only_when_due(db: Engine, key: SigningKey) -> None:
    append_runs(db, 1, 2)
    assert checkpoint(db, key, every=10) is not None  # the first one: nothing signed yet
    append_runs(db, 3, 6)
    assert checkpoint(db, key, every=10) == []
    append_runs(db, 7, 8)
    (cp,) = checkpoint(db, key, every=10)
    assert (cp.org_id, cp.seq, cp.entries, cp.key_id) == (ORG, 16, 16, key.key_id)


# Erasure: a contact's payloads become tombstones, the chain still verifies, and a
# tombstone is no cover for an edit.

EMAIL, NAME = "ana.lee@acme.example", "Ana Lee"


def with_contact(db: Engine) -> None:
    with Session(db) as s:
        s.add(
            Account(
                id="acc-1",
                name="Acme",
                segment="smb",
                region="eu",
                arr=1.0,
                seats_purchased=1,
                seats_used=1,
                active_users_30d=1,
                logins_30d=1,
                renewal_date=date(2027, 1, 1),
                owner_csm="demo:dana",
            )
        )
        s.add(Contact(id="acc-1-c1", account_id="acc-1", name=NAME, email=EMAIL, role="champion"))
        s.commit()


def mail_step(run: int) -> AuditEvent:
    sent = {"status": "executed", "to": EMAIL, "body": f"Hi {NAME}, your renewal", "n": run}
    return event(run, "execute").model_copy(update={"decision": sent})


def erased_trail(db: Engine, key: SigningKey) -> int:
    """Entries 1-2 plain, 3 mentions the contact, 4-6 plain, checkpoint at 6; then the
    erasure (entry 7). Returns the erased entry's seq."""
    with_contact(db)
    append_runs(db, 1, 1)
    audit.append(db, [mail_step(9)])
    append_runs(db, 2, 2)
    audit.append(db, [event(3, "plan")])
    assert checkpoint(db, key)
    erase_contact(db, "acc-1-c1", actor="dpo", reason="art. 17")
    return 3


def test_an_erased_entry_verifies_under_the_checkpoint_signed_before(
    db: Engine, key: SigningKey
) -> None:
    erased = erased_trail(db, key)
    rows = entries(db)
    assert EMAIL not in json.dumps(rows[erased - 1].decision)
    assert rows[erased - 1].decision["status"] == "executed"  # what is not personal stays
    assert rows[-1].step == "erase"
    report = check(db, key)
    assert report.intact and report.erased == 1 and report.verified == 7
    assert report.chain(ORG).signed_seq == 6  # its hash did not change: the old signature holds


def test_an_edited_tombstone_is_named(db: Engine, key: SigningKey) -> None:
    erased = erased_trail(db, key)
    sql(
        db,
        f"UPDATE auditentry SET decision = replace(decision, 'executed', 'failed') "
        f"WHERE seq = {erased}",
    )
    first = check(db, key).findings[0]
    assert (first.code, first.seq) == ("audit.entry_altered", erased)


def test_a_payload_swapped_for_a_forged_tombstone_is_named(db: Engine, key: SigningKey) -> None:
    erased_trail(db, key)
    forged = json.dumps({"erased": {"by": "erase", "ref": "privacy/erase/1"}})
    sql(db, f"UPDATE auditentry SET decision = '{forged}' WHERE seq = 5")
    first = check(db, key).findings[0]
    assert (first.code, first.seq) == ("audit.entry_altered", 5)


def test_a_tombstone_with_no_erasure_behind_it_is_named(db: Engine, key: SigningKey) -> None:
    erased = erased_trail(db, key)
    sql(db, "DELETE FROM auditentry WHERE step = 'erase'")  # and the vouching entry with it
    first = check(db, key).findings[0]
    assert (first.code, first.seq) == ("audit.entry_altered", erased)


def legacy_append(db: Engine, events: list[AuditEvent]) -> None:
    """Entries as written before decision digests: hashed over the whole payload."""
    with Session(db) as s:
        prev = audit.GENESIS
        for ev in events:
            at = datetime.now(UTC)
            digest = audit._legacy_hash(prev, ev, at)  # pyright: ignore[reportPrivateUsage]
            fields = ev.model_dump(exclude={"org_id"})  # the legacy chain: no organisation
            s.add(AuditEntry(at=at, prev_hash=prev, hash=digest, **fields))
            prev = digest
        s.commit()


def test_a_chain_written_before_digests_verifies_edits_are_named_and_it_can_be_erased(
    db: Engine, key: SigningKey
) -> None:
    with_contact(db)
    legacy_append(db, [event(1, "plan"), mail_step(2), event(3, "plan")])
    assert all(r.decision_hash is None for r in entries(db))
    assert check(db, key).intact
    audit.append(db, [event(4, "plan")])  # new entries start the organisation's chain beside it
    report = check(db, key)
    assert report.intact and [c.org_id for c in report.chains] == [None, ORG]

    erase_contact(db, "acc-1-c1", actor="dpo")
    report = check(db, key)
    assert report.intact and report.erased == 1
    sql(db, "UPDATE auditentry SET actor = 'someone-else' WHERE seq = 2")  # the erased one
    first = check(db, key).findings[0]
    assert (first.code, first.seq, first.org_id) == ("audit.entry_altered", 2, None)


def test_an_edited_legacy_payload_is_named(db: Engine, key: SigningKey) -> None:
    legacy_append(db, [event(1, "plan"), event(2, "plan")])
    sql(db, "UPDATE auditentry SET decision = replace(decision, 'executed', 'x') WHERE seq = 2")
    first = check(db, key).findings[0]
    assert (first.code, first.seq) == ("audit.entry_altered", 2)
