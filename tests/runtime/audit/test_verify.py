"""`verify` names the first entry edited, deleted, reordered or missing, and a checkpoint
that does not verify. Every tampering is done directly in the database, by someone with
write access to the store and knowledge of the hash function, but not the signing key."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import delete, text, update
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from autopilot.runtime.audit import keys
from autopilot.runtime.audit.checkpoints import checkpoint
from autopilot.runtime.audit.keys import SigningKey
from autopilot.runtime.store import audit
from autopilot.runtime.store.audit import AuditCheckpoint, AuditEntry, checkpoint_message
from tests.runtime.audit.conftest import append_runs, check, entries


def signed_trail(db: Engine, key: SigningKey) -> None:
    """Six entries, a checkpoint at entry 4 and one at entry 6 (the head)."""
    append_runs(db, 1, 2)
    assert checkpoint(db, key) is not None
    append_runs(db, 3, 3)
    assert checkpoint(db, key) is not None
    assert [e.seq for e in entries(db)] == [1, 2, 3, 4, 5, 6]


def sql(db: Engine, statement: str) -> None:
    with Session(db) as s:
        s.connection().execute(text(statement))
        s.commit()


def test_an_untouched_signed_trail_verifies(db: Engine, key: SigningKey) -> None:
    signed_trail(db, key)
    report = check(db, key)
    assert report.intact and report.verified == 6 and report.signed_seq == 6
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
    assert checkpoint(db, key) is not None
    with Session(db) as s:
        s.connection().execute(delete(AuditCheckpoint).where(col(AuditCheckpoint.id) == 2))
        s.commit()
    codes = [(f.code, f.checkpoint) for f in check(db, key).findings]
    assert codes == [("audit.checkpoint_missing", 3)]


def test_a_checkpoint_is_written_only_when_due(db: Engine, key: SigningKey) -> None:
    append_runs(db, 1, 2)
    assert checkpoint(db, key, every=10) is not None  # the first one: nothing signed yet
    append_runs(db, 3, 6)
    assert checkpoint(db, key, every=10) is None
    append_runs(db, 7, 8)
    cp = checkpoint(db, key, every=10)
    assert cp is not None and (cp.seq, cp.entries, cp.key_id) == (16, 16, key.key_id)
