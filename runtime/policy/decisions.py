"""The decision log: query it, purge it past its retention, and replay it against a
candidate bundle (what-if) before rolling new rules out."""

from __future__ import annotations

import re
from collections import Counter
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
        roles=sorted({a["role"] for a in row.result.get("approval", [])}),
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
        if not row.input:
            skipped += 1  # decided before evaluation (e.g. a spec mismatch): nothing to replay
            continue
        new = decide_raw(candidate, row.input)
        old_codes = row.codes.split()
        new_codes = sorted({v.code for v in new.deny})
        old_roles = sorted({a["role"] for a in row.result.get("approval", [])})
        key = f"{row.outcome}->{new.outcome}"
        transitions[key] += 1
        if row.outcome != new.outcome or old_codes != new_codes or old_roles != new.roles:
            changed += 1
            bucket = samples.setdefault(key, [])
            if len(bucket) < examples:
                bucket.append(
                    {
                        "id": row.id,
                        "run_key": row.run_key,
                        "account_id": row.account_id,
                        "codes_before": old_codes,
                        "codes_after": new_codes,
                        "roles_before": old_roles,
                        "roles_after": new.roles,
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
