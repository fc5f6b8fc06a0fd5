"""Verify the audit trail: each organisation's chain (and the legacy chain of entries
written before chains were per organisation), link by link, then its signed checkpoints.

A chain shows an entry edited, deleted or moved (`audit.entry_altered`,
`audit.entry_missing`, `audit.entry_reordered`, `audit.link_broken`). It cannot show
its newest entries cut, nor a rewrite that recomputed every hash after an edit: a
valid prefix is a valid chain. Its checkpoints can (`audit.truncated`,
`audit.rewritten`), and one whose signature does not verify against a trusted key is
named (`audit.checkpoint_signature_invalid`, `audit.checkpoint_key_unknown`). Every
finding names its chain (`org_id`; None: the legacy chain) and the entry's number in it.

An erased entry (its payload a tombstone vouched for by a later erase/retention entry of
its chain) verifies and is counted in `erased`; a payload changed without such a
tombstone, or a tombstone changed after it was written, is `audit.entry_altered`."""

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
    Chain,
    chain_name,
    chain_rows,
    chains_of,
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
    seq: int | None = None  # the entry concerned: its number in its chain
    checkpoint: int | None = None  # the checkpoint concerned
    org_id: str | None = None  # the chain (None: the legacy chain)


@dataclass
class Report:
    """One chain's verification."""

    org_id: str | None = None  # None: the legacy chain
    entries: int = 0
    verified: int = 0  # entries that verified, in order, before the first break
    checkpoints: int = 0
    erased: int = 0  # entries whose payload is a vouched-for tombstone (erasure, retention)
    head_seq: int | None = None
    signed_seq: int | None = None  # the newest head a valid checkpoint vouches for
    # Entries after the newest valid checkpoint: a cut there would go unseen.
    unsigned: int = 0
    findings: list[Finding] = field(default_factory=list)

    @property
    def intact(self) -> bool:
        return not self.findings

    def as_json(self) -> dict[str, Any]:
        return {
            "org_id": self.org_id,
            "legacy": self.org_id is None,
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


@dataclass
class TrailReport:
    """Every chain verified, the legacy chain first."""

    chains: list[Report] = field(default_factory=list)

    @property
    def intact(self) -> bool:
        return all(c.intact for c in self.chains)

    @property
    def findings(self) -> list[Finding]:
        return [f for c in self.chains for f in c.findings]

    def chain(self, org_id: str | None) -> Report:
        """One chain's report (None: the legacy chain); KeyError if the store has none."""
        for c in self.chains:
            if c.org_id == org_id:
                return c
        raise KeyError(chain_name(org_id))

    # Over every chain:
    @property
    def entries(self) -> int:
        return sum(c.entries for c in self.chains)

    @property
    def verified(self) -> int:
        return sum(c.verified for c in self.chains)

    @property
    def checkpoints(self) -> int:
        return sum(c.checkpoints for c in self.chains)

    @property
    def erased(self) -> int:
        return sum(c.erased for c in self.chains)

    @property
    def unsigned(self) -> int:
        return sum(c.unsigned for c in self.chains)

    def as_json(self) -> dict[str, Any]:
        found = self.findings
        return {
            "ok": self.intact,
            "entries": self.entries,
            "verified": self.verified,
            "checkpoints": self.checkpoints,
            "erased": self.erased,
            "unsigned_entries": self.unsigned,
            "first": asdict(found[0]) if found else None,
            "findings": [asdict(f) for f in found],
            "chains": [c.as_json() for c in self.chains],
        }


def _chain_break(chain: Chain, rows: list[AuditEntry]) -> tuple[int, Finding | None]:
    """Walk one chain; the first entry that does not verify, classified."""
    where = chain_name(chain)
    by_hash = {r.hash: r for r in rows}
    vouchers = vouchers_of(rows)
    prev, prev_pos = GENESIS, 0
    for n, row in enumerate(rows):
        assert row.seq is not None  # a stored row always has one
        pos = row.position
        if row.prev_hash != prev:
            moved = by_hash.get(row.prev_hash)
            if moved is not None and moved.seq is not None and moved.seq > row.seq:
                return n, Finding(
                    "audit.entry_reordered",
                    f"{where}: entry {moved.position} is stored after entry {pos}, "
                    "which follows it in the chain",
                    seq=prev_pos + 1,
                    org_id=chain,
                )
            if pos != prev_pos + 1:
                gone = f"{prev_pos + 1}" + (f"-{pos - 1}" if pos - 1 > prev_pos + 1 else "")
                return n, Finding(
                    "audit.entry_missing",
                    f"{where}: entry {gone} is missing: entry {pos} does not link to "
                    f"entry {prev_pos or 'genesis'}",
                    seq=prev_pos + 1,
                    org_id=chain,
                )
            return n, Finding(
                "audit.link_broken",
                f"{where}: entry {pos} does not link to the entry before it",
                seq=pos,
                org_id=chain,
            )
        if chain is not None and pos != prev_pos + 1:  # linked, but numbered elsewhere
            return n, Finding(
                "audit.entry_reordered",
                f"{where}: entry {pos} stands where entry {prev_pos + 1} belongs",
                seq=prev_pos + 1,
                org_id=chain,
            )
        problem = entry_problem(prev, row, vouchers)
        if problem is not None:
            return n, Finding("audit.entry_altered", f"{where}: {problem}", seq=pos, org_id=chain)
        prev, prev_pos = row.hash, pos
    return len(rows), None


def _checkpoint_findings(
    chain: Chain,
    rows: list[AuditEntry],
    cps: list[AuditCheckpoint],
    trusted: TrustedKeys,
    report: Report,
) -> list[Finding]:
    where = chain_name(chain)
    by_pos = {r.position: r for r in rows}
    head = rows[-1].position if rows else 0
    found: list[Finding] = []
    prev_link, good_seq = GENESIS, 0

    def finding(code: Code, message: str, cp: AuditCheckpoint, seq: int | None = None) -> None:
        found.append(Finding(code, f"{where}: {message}", seq=seq, checkpoint=cp.id, org_id=chain))

    for cp in cps:
        assert cp.id is not None
        message = checkpoint_message(
            org_id=cp.org_id,
            seq=cp.seq,
            head_hash=cp.head_hash,
            entries=cp.entries,
            at=cp.at,
            key_id=cp.key_id,
            prev=cp.prev,
        )
        valid = trusted.verify(cp.key_id, message, cp.signature)
        if valid is None:
            finding(
                "audit.checkpoint_key_unknown",
                f"checkpoint {cp.id} is signed by key {cp.key_id}, which is not trusted",
                cp,
            )
        elif not valid:
            finding(
                "audit.checkpoint_signature_invalid",
                f"checkpoint {cp.id}: its signature does not verify with key {cp.key_id}",
                cp,
            )
        if not valid:
            prev_link = sha256_hex(bytes.fromhex(cp.signature)) if _is_hex(cp.signature) else ""
            continue
        if cp.prev != prev_link:
            finding(
                "audit.checkpoint_missing",
                f"checkpoint {cp.id} does not follow the checkpoint before it (one was removed)",
                cp,
            )
        prev_link = sha256_hex(bytes.fromhex(cp.signature))
        entry = by_pos.get(cp.seq)
        if entry is None and cp.seq > head:
            finding(
                "audit.truncated",
                f"entries {head + 1}-{cp.seq} are gone: checkpoint {cp.id} "
                f"signed a chain of {cp.entries} entries up to entry {cp.seq}",
                cp,
                seq=head + 1,
            )
        elif entry is None:
            finding(
                "audit.entry_missing",
                f"entry {cp.seq}, signed by checkpoint {cp.id}, is missing",
                cp,
                seq=cp.seq,
            )
        elif entry.hash != cp.head_hash:
            finding(
                "audit.rewritten",
                f"the chain was rewritten after entry {good_seq} and at or before entry "
                f"{cp.seq}: it no longer has the head checkpoint {cp.id} signed",
                cp,
                seq=good_seq + 1,
            )
        elif sum(1 for r in rows if r.position <= cp.seq) != cp.entries:
            finding(
                "audit.entry_missing",
                f"checkpoint {cp.id} signed {cp.entries} entries up to entry {cp.seq}; "
                "a different number is there now",
                cp,
                seq=cp.seq,
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


def verify_chain(session: Session, trusted: TrustedKeys, chain: Chain) -> Report:
    """Check one chain; findings in order: its first break, then each checkpoint that fails."""
    rows = chain_rows(session, chain)
    org = col(AuditCheckpoint.org_id)
    cps = list(
        session.exec(
            select(AuditCheckpoint)
            .where(org.is_(None) if chain is None else org == chain)
            .order_by(col(AuditCheckpoint.id))
        )
    )
    report = Report(org_id=chain, entries=len(rows), checkpoints=len(cps))
    report.head_seq = rows[-1].position if rows else None
    report.erased = sum(1 for r in rows if tombstone_mark(r.decision) is not None)
    report.verified, first = _chain_break(chain, rows)
    if first is not None:
        report.findings.append(first)
    report.findings += _checkpoint_findings(chain, rows, cps, trusted, report)
    report.unsigned = sum(1 for r in rows if r.position > (report.signed_seq or 0))
    return report


def verify(session: Session, trusted: TrustedKeys, *, org_id: str | None = None) -> TrailReport:
    """Check every chain of the store (the legacy one first), or only `org_id`'s."""
    chains = chains_of(session) if org_id is None else [org_id]
    return TrailReport([verify_chain(session, trusted, c) for c in chains])
