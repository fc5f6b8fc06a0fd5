"""Verify the audit trail: every link of the chain, then every signed checkpoint.

The chain shows an entry edited, deleted or moved (`audit.entry_altered`,
`audit.entry_missing`, `audit.entry_reordered`, `audit.link_broken`). It cannot show
its newest entries cut, nor a rewrite that recomputed every hash after an edit: a
valid prefix is a valid chain. The checkpoints can (`audit.truncated`,
`audit.rewritten`), and one whose signature does not verify against a trusted key is
named (`audit.checkpoint_signature_invalid`, `audit.checkpoint_key_unknown`).

An erased entry (its payload a tombstone vouched for by a later erase/retention entry)
verifies and is counted in `erased`; a payload changed without such a tombstone, or a
tombstone changed after it was written, is `audit.entry_altered`."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from sqlmodel import Session, col, select

from autopilot.runtime.audit.keys import TrustedKeys
from autopilot.runtime.contracts.hashing import sha256_hex
from autopilot.runtime.store.audit import (
    GENESIS,
    AuditCheckpoint,
    AuditEntry,
    checkpoint_message,
    entry_problem,
    tombstone_mark,
    vouchers_of,
)

Code = Literal[
    "audit.entry_altered",
    "audit.entry_missing",
    "audit.entry_reordered",
    "audit.link_broken",
    "audit.truncated",
    "audit.rewritten",
    "audit.checkpoint_signature_invalid",
    "audit.checkpoint_key_unknown",
    "audit.checkpoint_missing",
]


@dataclass(frozen=True)
class Finding:
    code: Code
    message: str
    seq: int | None = None  # the entry concerned
    checkpoint: int | None = None  # the checkpoint concerned


@dataclass
class Report:
    entries: int = 0
    verified: int = 0  # entries that verified, in order, before the first break
    checkpoints: int = 0
    erased: int = 0  # entries whose payload is a vouched-for tombstone (erasure, retention)
    head_seq: int | None = None
    signed_seq: int | None = None  # the newest head a valid checkpoint vouches for
    findings: list[Finding] = field(default_factory=list)

    @property
    def intact(self) -> bool:
        return not self.findings

    @property
    def unsigned(self) -> int:
        """Entries after the newest valid checkpoint: a cut there would go unseen."""
        if self.head_seq is None:
            return 0
        return self.head_seq - (self.signed_seq or 0)

    def as_json(self) -> dict[str, Any]:
        return {
            "ok": self.intact,
            "entries": self.entries,
            "verified": self.verified,
            "checkpoints": self.checkpoints,
            "erased": self.erased,
            "head_seq": self.head_seq,
            "signed_seq": self.signed_seq,
            "unsigned_entries": self.unsigned,
            "first": asdict(self.findings[0]) if self.findings else None,
            "findings": [asdict(f) for f in self.findings],
        }


def _chain_break(rows: list[AuditEntry]) -> tuple[int, Finding | None]:
    """Walk the chain; the first entry that does not verify, classified."""
    by_hash = {r.hash: r.seq for r in rows}
    vouchers = vouchers_of(rows)
    prev, prev_seq = GENESIS, 0
    for n, row in enumerate(rows):
        assert row.seq is not None  # a stored row always has one
        if row.prev_hash != prev:
            moved = by_hash.get(row.prev_hash)
            if moved is not None and moved > row.seq:
                return n, Finding(
                    "audit.entry_reordered",
                    f"entry {row.seq} follows entry {moved} in the chain but is stored before it",
                    seq=row.seq,
                )
            if row.seq != prev_seq + 1:
                gone = f"{prev_seq + 1}" + (f"-{row.seq - 1}" if row.seq - 1 > prev_seq + 1 else "")
                return n, Finding(
                    "audit.entry_missing",
                    f"entry {gone} is missing: entry {row.seq} does not link to entry {prev_seq or 'genesis'}",
                    seq=prev_seq + 1,
                )
            return n, Finding(
                "audit.link_broken",
                f"entry {row.seq} does not link to the entry before it",
                seq=row.seq,
            )
        problem = entry_problem(prev, row, vouchers)
        if problem is not None:
            return n, Finding("audit.entry_altered", problem, seq=row.seq)
        prev, prev_seq = row.hash, row.seq
    return len(rows), None


def _checkpoint_findings(
    rows: list[AuditEntry], cps: list[AuditCheckpoint], trusted: TrustedKeys, report: Report
) -> list[Finding]:
    by_seq = {r.seq: r for r in rows}
    head = rows[-1].seq if rows else 0
    found: list[Finding] = []
    prev_link, good_seq = GENESIS, 0
    for cp in cps:
        assert cp.id is not None
        message = checkpoint_message(
            seq=cp.seq,
            head_hash=cp.head_hash,
            entries=cp.entries,
            at=cp.at,
            key_id=cp.key_id,
            prev=cp.prev,
        )
        valid = trusted.verify(cp.key_id, message, cp.signature)
        if valid is None:
            found.append(
                Finding(
                    "audit.checkpoint_key_unknown",
                    f"checkpoint {cp.id} is signed by key {cp.key_id}, which is not trusted",
                    checkpoint=cp.id,
                )
            )
        elif not valid:
            found.append(
                Finding(
                    "audit.checkpoint_signature_invalid",
                    f"checkpoint {cp.id}: its signature does not verify with key {cp.key_id}",
                    checkpoint=cp.id,
                )
            )
        if not valid:
            prev_link = sha256_hex(bytes.fromhex(cp.signature)) if _is_hex(cp.signature) else ""
            continue
        if cp.prev != prev_link:
            found.append(
                Finding(
                    "audit.checkpoint_missing",
                    f"checkpoint {cp.id} does not follow the checkpoint before it (one was removed)",
                    checkpoint=cp.id,
                )
            )
        prev_link = sha256_hex(bytes.fromhex(cp.signature))
        entry = by_seq.get(cp.seq)
        if entry is None and cp.seq > (head or 0):
            found.append(
                Finding(
                    "audit.truncated",
                    f"entries {(head or 0) + 1}-{cp.seq} are gone: checkpoint {cp.id} "
                    f"signed a chain of {cp.entries} entries up to entry {cp.seq}",
                    seq=(head or 0) + 1,
                    checkpoint=cp.id,
                )
            )
        elif entry is None:
            found.append(
                Finding(
                    "audit.entry_missing",
                    f"entry {cp.seq}, signed by checkpoint {cp.id}, is missing",
                    seq=cp.seq,
                    checkpoint=cp.id,
                )
            )
        elif entry.hash != cp.head_hash:
            found.append(
                Finding(
                    "audit.rewritten",
                    f"the chain was rewritten after entry {good_seq} and at or before entry "
                    f"{cp.seq}: it no longer has the head checkpoint {cp.id} signed",
                    seq=good_seq + 1,
                    checkpoint=cp.id,
                )
            )
        elif sum(1 for r in rows if r.seq is not None and r.seq <= cp.seq) != cp.entries:
            found.append(
                Finding(
                    "audit.entry_missing",
                    f"checkpoint {cp.id} signed {cp.entries} entries up to entry {cp.seq}; "
                    "a different number is there now",
                    seq=cp.seq,
                    checkpoint=cp.id,
                )
            )
        else:
            good_seq = cp.seq
            report.signed_seq = cp.seq
    return found


def _is_hex(text: str) -> bool:
    try:
        bytes.fromhex(text)
    except ValueError:
        return False
    return True


def verify(session: Session, trusted: TrustedKeys) -> Report:
    """Check the whole trail; findings in order: the chain's first break, then each
    checkpoint that fails."""
    rows = list(session.exec(select(AuditEntry).order_by(col(AuditEntry.seq))))
    cps = list(session.exec(select(AuditCheckpoint).order_by(col(AuditCheckpoint.id))))
    report = Report(entries=len(rows), checkpoints=len(cps))
    report.head_seq = rows[-1].seq if rows else None
    report.erased = sum(1 for r in rows if tombstone_mark(r.decision) is not None)
    report.verified, first = _chain_break(rows)
    if first is not None:
        report.findings.append(first)
    report.findings += _checkpoint_findings(rows, cps, trusted, report)
    return report
