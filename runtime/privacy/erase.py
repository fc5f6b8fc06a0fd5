"""Erase a contact: their name and email leave every table, in one transaction, and the
audit chain still verifies.

Ordinary tables are scrubbed in place (the contact's values replaced by "[erased]"), so
the facts stay (an action was sent, a decision was taken) but not who they were about.
The contact row stays, anonymised and opted out, so no agent contacts them again. Audit
entries cannot be rewritten (their hashes are chained), so each entry that mentions the
contact gets a tombstone payload, and an `erase` entry appended in the same transaction
vouches for every tombstone by its digest (see `store.audit.entry_problem`). Only the
contact's organisation's chain is searched (and the legacy chain, written before chains
were per organisation); the `erase` entry goes into each chain it tombstoned in (the
organisation's always), so another organisation's chain is never touched and every chain
verifies on its own. Nothing is half-written: any error rolls the whole erasure back."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlmodel import Session, SQLModel, col, select

from autopilot.runtime.contracts.audit import AuditEvent
from autopilot.runtime.contracts.hashing import sha256_hex
from autopilot.runtime.privacy.redact import RedactionRules, redact
from autopilot.runtime.store.accounts import Account, Contact
from autopilot.runtime.store.audit import (
    DEFAULT_ORG,
    PRIVACY_STEPS,
    AuditEntry,
    Chain,
    Erasure,
    append_locked,
    chain_name,
    check_chain,
    decision_digest,
    in_chain,
    lock_chains,
    sealed_digest,
    tombstone_mark,
)

ERASED = "[erased]"
# Not scrubbed as ordinary tables: the chain (tombstoned instead), the erasure log, the
# contact (anonymised field by field) and the migrations' own table.
SKIP = frozenset({"auditentry", "auditcheckpoint", "erasure", "contact", "alembic_version"})
# Columns that may hold the contact's values in an encoded form the scrub cannot see
# (a raw MIME message: quoted-printable, base64): erased whole in a matching row.
WHOLE = {"receivedmail": frozenset({"raw"})}


class ErasureError(Exception):
    """The erasure cannot be done (unknown contact, a chain that does not verify)."""


@dataclass(frozen=True)
class ErasureResult:
    erasure_id: int
    contact_hash: str
    counts: dict[str, int]  # rows changed per table (auditentry: entries tombstoned)
    audit_run_key: str

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


def contact_hash(contact_id: str) -> str:
    return sha256_hex(contact_id.encode())


@dataclass(frozen=True)
class _Match:
    """Which rows are the contact's: those holding their email (or their id, quoted in a
    JSON payload or as a whole column value). Their name alone does not select a row:
    names repeat, and another person of the same name keeps their data. In a selected
    row both the email and the name are replaced."""

    contact_id: str
    needles: tuple[str, ...]  # email variants, and the id as a JSON string

    @classmethod
    def of(cls, contact_id: str, email: str) -> _Match:
        # A JSON column escapes non-ASCII ("José" is stored as "Jos\u00e9").
        variants = {email, json.dumps(email)[1:-1], json.dumps(contact_id)} - {"", '""'}
        return cls(contact_id, tuple(sorted(variants)))

    def where(self, column: Any) -> sa.ColumnElement[bool]:
        text = sa.cast(column, sa.Text)
        return sa.or_(text == self.contact_id, *[text.ilike(f"%{n}%") for n in self.needles])


def _is_text(column: sa.Column[Any]) -> bool:
    kind = getattr(column.type, "impl", column.type)  # AutoString decorates a String
    return isinstance(kind, sa.String | sa.JSON)


def _scrub_table(session: Session, table: sa.Table, match: _Match, rules: RedactionRules) -> int:
    text_cols = [c for c in table.columns if _is_text(c)]
    if not text_cols:
        return 0
    conn = session.connection()
    pk = list(table.primary_key.columns)
    changed = 0
    for row in (
        conn.execute(sa.select(table).where(sa.or_(*[match.where(c) for c in text_cols])))
        .mappings()
        .all()
    ):
        new: dict[str, Any] = {}
        for c in text_cols:
            old = row[c.name]
            value = ERASED if c.name in WHOLE.get(table.name, ()) and old else redact(old, rules)
            if value != old:
                new[c.name] = value
        if new:
            conn.execute(sa.update(table).where(*[c == row[c.name] for c in pk]).values(**new))
            changed += 1
    return changed


def _tombstone_entries(
    session: Session, chain: Chain, match: _Match, rules: RedactionRules, run_key: str
) -> dict[str, str]:
    """Tombstone every entry of `chain` whose payload mentions the contact; {seq: sealed
    digest}."""
    mentions = match.where(col(AuditEntry.decision))
    rows = session.exec(
        select(AuditEntry).where(in_chain(chain), mentions).order_by(col(AuditEntry.seq))
    ).all()
    sealed: dict[str, str] = {}
    for row in rows:
        mark = tombstone_mark(row.decision)
        if row.step in PRIVACY_STEPS or (mark is not None and mark.get("by") == "retention"):
            continue  # no personal data there: vouchers, and payloads already emptied
        kept = redact(row.decision, rules)
        if kept == row.decision:
            continue  # it names the contact by id only, or matched loosely (a LIKE wildcard)
        if mark is None and row.decision_hash is not None:
            row.decision_hash = decision_digest(row.decision)  # the payload the chain verified
        row.decision = {**kept, "erased": {"by": "erase", "ref": run_key}}
        session.add(row)
        session.flush()
        sealed[str(row.seq)] = sealed_digest(row)
    return sealed


def erase_contact(
    engine: Engine,
    contact_id: str,
    *,
    actor: str,
    reason: str = "",
    now: datetime | None = None,
) -> ErasureResult:
    """Erase `contact_id`'s name and email from the store, all or nothing."""
    now = now or datetime.now(UTC)
    with Session(engine, expire_on_commit=False) as session:
        sqlite = engine.dialect.name == "sqlite"
        if sqlite:  # freed pages are zeroed: the old values do not linger in the file
            session.connection().exec_driver_sql("PRAGMA secure_delete=ON")
        try:
            contact = session.get(Contact, contact_id)
            if contact is None:
                raise ErasureError(f"contact_id: no contact {contact_id!r}")
            org = (
                session.exec(select(Account.org_id).where(Account.id == contact.account_id)).first()
                or DEFAULT_ORG
            )
            chains: list[Chain] = [org, None]  # the organisation's chain, the legacy chain
            lock_chains(session, chains)  # the chains' write lock: the erase entry goes here
            check = check_chain(session, chains)
            if check.broken is not None:
                raise ErasureError(
                    f"the audit chain ({chain_name(check.broken.org_id)}) does not verify at "
                    f"entry {check.broken.seq} ({check.broken.code}): tombstoning now would "
                    "hide it; run `audit verify`"
                )
            values = [v for v in (contact.email, contact.name) if v and v != ERASED]
            rules = RedactionRules(mode="mask", mask=ERASED).with_values(values)
            match = _Match.of(contact_id, contact.email)
            counts: dict[str, int] = {}
            for table in SQLModel.metadata.sorted_tables:
                if table.name not in SKIP:
                    n = _scrub_table(session, table, match, rules)
                    if n:
                        counts[table.name] = n
            digest = contact_hash(contact_id)
            contact.name = ERASED
            contact.email = f"erased-{digest[:12]}@erased.invalid"
            contact.opted_out = True  # nobody contacts them again
            session.add(contact)
            counts["contact"] = 1
            erasure = Erasure(
                at=now,
                actor=actor,
                contact_hash=digest,
                reason=str(redact(reason, RedactionRules.from_settings().with_values(values))),
                audit_run_key="",
            )
            session.add(erasure)
            session.flush()
            run_key = f"privacy/erase/{erasure.id}"
            keys: dict[Chain, str] = {org: run_key, None: f"{run_key}/legacy"}
            sealed = {c: _tombstone_entries(session, c, match, rules, keys[c]) for c in chains}
            counts["auditentry"] = sum(len(s) for s in sealed.values())
            erasure.counts = counts
            erasure.audit_run_key = run_key
            session.add(erasure)
            for chain in chains:
                if chain is None and not sealed[None]:
                    continue  # nothing of the legacy chain tombstoned: nothing to vouch for
                step = AuditEvent(
                    workflow_id="privacy",
                    run_key=keys[chain],
                    step="erase",
                    actor=actor,
                    input_hash=digest,
                    decision={
                        "erasure_id": erasure.id,
                        "contact": digest,
                        "reason": erasure.reason,
                        "counts": counts,
                        "tombstones": sealed[chain],
                    },
                    bundle_hash="",
                    spec_hash="",
                    org_id=org,
                )
                # A stray entry holding its key would leave the tombstones unvouched.
                if append_locked(session, [step], legacy=chain is None) != 1:
                    raise ErasureError(f"the audit chain already has an entry {keys[chain]!r}")
            session.commit()
        except BaseException:
            session.rollback()
            raise
        if sqlite:  # old page images leave the write-ahead log (best effort: readers may hold it)
            session.connection().exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
            session.commit()
    assert erasure.id is not None
    return ErasureResult(erasure.id, digest, counts, run_key)
