"""The decision log: query it, purge it past its retention, and replay it against a
candidate bundle (what-if) before rolling new rules out."""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from pydantic import BaseModel
from sqlalchemy import delete
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from autopilot.runtime.contracts.policy import Decision
from autopilot.runtime.policy.engine import PolicyEngine, decide_raw
from autopilot.runtime.store.actions import PolicyDecisionRecord


class DecisionPublic(BaseModel):
    id: int
    run_key: str
    account_id: str
    agent: str
    outcome: str
    codes: list[str]
    roles: list[str]
    input_hash: str
    bundle_hash: str
    latency_ms: float
    decided_at: datetime


def parse_since(text: str) -> timedelta:
    found = re.fullmatch(r"(\d+)([dhm])", text.strip())
    if not found:
        raise ValueError(f"--since takes a span like 30d, 12h or 45m, not {text!r}")
    n, unit = int(found.group(1)), found.group(2)
    return {"d": timedelta(days=n), "h": timedelta(hours=n), "m": timedelta(minutes=n)}[unit]


def _public(row: PolicyDecisionRecord) -> DecisionPublic:
    assert row.id is not None
    return DecisionPublic(
        id=row.id,
        run_key=row.run_key,
        account_id=row.account_id,
        agent=row.agent,
        outcome=row.outcome,
        codes=row.codes.split(),
        roles=recorded_roles(row),
        input_hash=row.input_hash,
        bundle_hash=row.bundle_hash,
        latency_ms=row.latency_ms,
        decided_at=row.decided_at,
    )


def query(
    session: Session,
    *,
    account_id: str | None = None,
    agent: str | None = None,
    code: str | None = None,
    outcome: str | None = None,
    since: datetime | None = None,
    limit: int = 200,
    accounts: Any = None,
) -> list[DecisionPublic]:
    """`accounts`: a subquery of the account ids the reader may see (None: all)."""
    q = select(PolicyDecisionRecord).order_by(col(PolicyDecisionRecord.id).desc()).limit(limit)
    if accounts is not None:
        q = q.where(col(PolicyDecisionRecord.account_id).in_(accounts))
    if account_id:
        q = q.where(PolicyDecisionRecord.account_id == account_id)
    if agent:
        q = q.where(PolicyDecisionRecord.agent == agent)
    if code:
        q = q.where(col(PolicyDecisionRecord.codes).contains(f" {code} "))
    if outcome:
        q = q.where(PolicyDecisionRecord.outcome == outcome)
    if since:
        q = q.where(PolicyDecisionRecord.decided_at >= since)
    return [_public(r) for r in session.exec(q)]


def purge(db: Engine, *, retention_days: int, now: datetime) -> int:
    """Delete decisions older than the retention; returns how many."""
    with Session(db) as session:
        result = session.execute(
            delete(PolicyDecisionRecord).where(
                col(PolicyDecisionRecord.decided_at) < now - timedelta(days=retention_days)
            )
        )
        session.commit()
        return int(result.rowcount or 0)  # type: ignore[attr-defined]


def _label(decision: Decision | dict[str, Any]) -> str:
    return decision.outcome if isinstance(decision, Decision) else str(decision.get("outcome"))


def recorded_roles(row: PolicyDecisionRecord) -> list[str]:
    return sorted({a["role"] for a in row.result.get("approval", [])})


@dataclass(frozen=True)
class Change:
    """One logged decision (as recorded) against a candidate bundle's decision."""

    id: int
    run_key: str
    account_id: str
    outcome_before: str
    outcome_after: str
    codes_before: list[str]
    codes_after: list[str]
    roles_before: list[str]
    roles_after: list[str]

    @property
    def changed(self) -> bool:
        return (self.outcome_before, self.codes_before, self.roles_before) != (
            self.outcome_after,
            self.codes_after,
            self.roles_after,
        )


def compare(row: PolicyDecisionRecord, candidate: PolicyEngine) -> Change | None:
    """A logged gate input decided again by `candidate`; None when the log holds no input
    (decided before evaluation, e.g. a spec mismatch: nothing to replay)."""
    if not row.input or row.id is None:
        return None
    new = decide_raw(candidate, row.input)
    return Change(
        id=row.id,
        run_key=row.run_key,
        account_id=row.account_id,
        outcome_before=row.outcome,
        outcome_after=new.outcome,
        codes_before=row.codes.split(),
        codes_after=sorted({v.code for v in new.deny}),
        roles_before=recorded_roles(row),
        roles_after=new.roles,
    )


def run_decisions(session: Session, workflow_id: str) -> list[PolicyDecisionRecord]:
    """Every logged gate of one workflow's runs (run keys are `workflow_id/event/index`,
    re-gates after a policy change included), in the order they were taken."""
    return list(
        session.exec(
            select(PolicyDecisionRecord)
            .where(col(PolicyDecisionRecord.run_key).startswith(f"{workflow_id}/"))
            .order_by(col(PolicyDecisionRecord.id))
        )
    )


def whatif_run(session: Session, candidate: PolicyEngine, workflow_id: str) -> list[Change]:
    """One run's gate inputs against a candidate bundle, step by step."""
    return [c for row in run_decisions(session, workflow_id) if (c := compare(row, candidate))]


def whatif(
    session: Session, candidate: PolicyEngine, *, since: datetime, examples: int = 3
) -> dict[str, Any]:
    """Re-evaluate every logged decision since `since` with the candidate bundle."""
    rows = session.exec(
        select(PolicyDecisionRecord)
        .where(PolicyDecisionRecord.decided_at >= since)
        .order_by(col(PolicyDecisionRecord.id))
    ).all()
    transitions: Counter[str] = Counter()
    samples: dict[str, list[dict[str, Any]]] = {}
    changed = skipped = 0
    for row in rows:
        c = compare(row, candidate)
        if c is None:
            skipped += 1
            continue
        key = f"{c.outcome_before}->{c.outcome_after}"
        transitions[key] += 1
        if c.changed:
            changed += 1
            bucket = samples.setdefault(key, [])
            if len(bucket) < examples:
                bucket.append(
                    {
                        "id": c.id,
                        "run_key": c.run_key,
                        "account_id": c.account_id,
                        "codes_before": c.codes_before,
                        "codes_after": c.codes_after,
                        "roles_before": c.roles_before,
                        "roles_after": c.roles_after,
                    }
                )
    return {
        "evaluated": len(rows) - skipped,
        "skipped": skipped,
        "changed": changed,
        "bundle_hash": candidate.bundle_hash,
        "transitions": dict(sorted(transitions.items())),
        "examples": samples,
    }
