"""Retention: rows older than the settings allow are deleted; the audit chain is not.

Each kept-for-a-while table has one age column and one setting (days; None keeps rows
for ever). Rows still in use are never due: an event not yet dispatched, a tool call
still running, a dispatch not yet done. The audit chain cannot lose entries (that would
break it), so an entry older than `retention_days_audit_payloads` keeps its links and
hash but its payload becomes a tombstone, vouched for by a `retention` entry appended in
the same transaction to the same chain (one per organisation's chain with payloads due,
and the legacy chain's; see `store.audit.entry_problem`): `audit verify` stays green.

`plan` counts, `apply` deletes in batches (the write lock is released between them, so
the API and workers keep going) and reports progress through a callback."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from autopilot.runtime.config import Settings
from autopilot.runtime.contracts.audit import AuditEvent
from autopilot.runtime.store.actions import PolicyDecisionRecord
from autopilot.runtime.store.audit import (
    DEFAULT_ORG,
    PRIVACY_STEPS,
    AuditEntry,
    Chain,
    append_locked,
    chain_name,
    check_chain,
    decision_digest,
    lock_chains,
    sealed_digest,
    tombstone_mark,
)
from autopilot.runtime.store.events import Event, EventDispatch, EventKey
from autopilot.runtime.store.mail import ReceivedMail
from autopilot.runtime.store.tool_calls import ToolCallRecord

BATCH = 500
Progress = Callable[[str, int, int], None]  # (table, done, total)


class RetentionError(Exception):
    """Retention cannot run (an audit chain that does not verify)."""


@dataclass(frozen=True)
class Rule:
    table: str
    key: Any  # the primary key's column (a model attribute), to delete by batch
    due: Callable[[datetime], sa.ColumnElement[bool]]  # rows older than the cut-off, not in use
    days: int | None


def rules(settings: Settings) -> list[Rule]:
    ev, mail = settings.retention_days_events, settings.retention_days_mail
    decisions = settings.decision_log_retention_days
    old_events = lambda cut: sa.and_(col(Event.received_at) < cut, col(Event.dispatched))
    return [
        # An idempotency key of a deleted event: a retry after this long is a new event.
        Rule("eventkey", col(EventKey.key), lambda cut: col(EventKey.event_id).in_(
            select(Event.id).where(old_events(cut))), ev),
        Rule("eventdispatch", col(EventDispatch.event_id), lambda cut: sa.and_(
            col(EventDispatch.created_at) < cut, col(EventDispatch.dispatched_at).is_not(None)), ev),
        Rule("event", col(Event.id), old_events, ev),
        Rule("policydecisionrecord", col(PolicyDecisionRecord.id),
             lambda cut: col(PolicyDecisionRecord.decided_at) < cut, decisions),
        Rule("toolcallrecord", col(ToolCallRecord.idempotency_key), lambda cut: sa.and_(
            col(ToolCallRecord.started_at) < cut, col(ToolCallRecord.status) != "started"), decisions),
        Rule("receivedmail", col(ReceivedMail.id), lambda cut: col(ReceivedMail.received_at) < cut, mail),
    ]  # fmt: skip


@dataclass
class RetentionReport:
    applied: bool
    tables: dict[str, int] = field(default_factory=dict)  # rows due (dry run) or deleted
    cutoffs: dict[str, str] = field(default_factory=dict)
    audit_payloads: int = 0  # entries whose payload is (or would be) tombstoned
    audit_run_keys: list[str] = field(default_factory=list)  # a retention entry per chain

    def as_json(self) -> dict[str, Any]:
        return {
            "ok": True,
            "applied": self.applied,
            "tables": self.tables,
            "cutoffs": self.cutoffs,
            "audit_payloads": self.audit_payloads,
            "audit_run_keys": self.audit_run_keys,
        }


def _audit_due(cut: datetime) -> sa.ColumnElement[bool]:
    return sa.and_(col(AuditEntry.at) < cut, col(AuditEntry.step).not_in(PRIVACY_STEPS))


def _is_retained(row: AuditEntry) -> bool:
    mark = tombstone_mark(row.decision)
    return mark is not None and mark.get("by") == "retention"


def run(
    engine: Engine,
    settings: Settings,
    *,
    apply: bool,
    now: datetime | None = None,
    progress: Progress | None = None,
) -> RetentionReport:
    """Count (apply=False) or delete (apply=True) what is past retention."""
    now = now or datetime.now(UTC)
    report = RetentionReport(applied=apply)
    for rule in rules(settings):
        if rule.days is None:
            continue
        cut = now - timedelta(days=rule.days)
        report.cutoffs[rule.table] = cut.isoformat()
        with Session(engine) as s:
            keys = list(s.exec(select(rule.key).where(rule.due(cut))).all())
        report.tables[rule.table] = len(keys)
        if not apply:
            continue
        for at in range(0, len(keys), BATCH):
            batch = keys[at : at + BATCH]
            with Session(engine) as s:
                s.connection().execute(sa.delete(rule.key.class_).where(rule.key.in_(batch)))
                s.commit()
            if progress:
                progress(rule.table, at + len(batch), len(keys))
    if settings.retention_days_audit_payloads is not None:
        cut = now - timedelta(days=settings.retention_days_audit_payloads)
        report.cutoffs["auditentry"] = cut.isoformat()
        _audit_payloads(engine, cut, now, report, progress)
    return report


def _audit_payloads(
    engine: Engine, cut: datetime, now: datetime, report: RetentionReport, progress: Progress | None
) -> None:
    """Tombstone payloads past retention, with a vouching entry in each chain concerned,
    in one transaction."""
    with Session(engine, expire_on_commit=False) as session:
        # Entries only become due as time passes: the chains with some due now stay so.
        chains: list[Chain] = sorted(
            set(session.exec(select(AuditEntry.org_id).where(_audit_due(cut)).distinct())),
            key=lambda c: (c is not None, c or ""),
        )
        if report.applied:
            lock_chains(session, chains)
            check = check_chain(session, chains)
            if check.broken is not None:
                session.rollback()
                raise RetentionError(
                    f"the audit chain ({chain_name(check.broken.org_id)}) does not verify at "
                    f"entry {check.broken.seq} ({check.broken.code}): tombstoning now would "
                    "hide it; run `audit verify`"
                )
        rows = [
            r
            for r in session.exec(
                select(AuditEntry).where(_audit_due(cut)).order_by(col(AuditEntry.seq))
            )
            if not _is_retained(r) and r.org_id in chains  # a chain locked and checked
        ]
        report.audit_payloads = len(rows)
        if not report.applied or not rows:
            session.rollback()
            return
        stamp = f"privacy/retention/{now.isoformat()}"
        keys = {c: stamp if c is None else f"{stamp}/{c}" for c in chains}
        sealed: dict[Chain, dict[str, str]] = {c: {} for c in chains}
        for n, row in enumerate(rows, 1):
            if tombstone_mark(row.decision) is None and row.decision_hash is not None:
                row.decision_hash = decision_digest(row.decision)  # the payload the chain verified
            row.decision = {"erased": {"by": "retention", "ref": keys[row.org_id]}}
            session.add(row)
            session.flush()
            sealed[row.org_id][str(row.seq)] = sealed_digest(row)
            if progress and (n % BATCH == 0 or n == len(rows)):
                progress("auditentry", n, len(rows))
        for chain in chains:
            if not sealed[chain]:
                continue
            step = AuditEvent(
                workflow_id="privacy",
                run_key=keys[chain],
                step="retention",
                actor="retention",
                input_hash=decision_digest({"cutoff": cut.isoformat()}),
                decision={
                    "cutoff": cut.isoformat(),
                    "deleted": report.tables,
                    "tombstones": sealed[chain],
                },
                bundle_hash="",
                spec_hash="",
                org_id=chain or DEFAULT_ORG,
            )
            # A stray entry holding its key would leave the tombstones unvouched.
            if append_locked(session, [step], legacy=chain is None) != 1:
                session.rollback()
                raise RetentionError(f"the audit chain already has an entry {keys[chain]!r}")
            report.audit_run_keys.append(keys[chain])
        session.commit()
