"""Each logged gate input of a run decided twice more: by the bundle its run pinned
(it must reproduce the logged decision: if not, the log or the engine is wrong) and
by today's bundle (a difference is a decision that would go otherwise today).

The logged decision carries the agent supervisor's overlay (its own caps add denials
`agent.*`, its autonomy adds approvals): these never remove anything the policy said,
so reproduction checks the policy's part exactly and the overlay for that shape only.
A pinned bundle missing from the store is reported as a gap, never skipped."""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

from sqlmodel import Session

from autopilot.runtime.contracts.policy import Decision
from autopilot.runtime.policy.decisions import recorded_roles, run_decisions
from autopilot.runtime.policy.engine import BUNDLE_MISMATCH, UNAVAILABLE, PolicyEngine, decide_raw
from autopilot.runtime.policy.rego import RegoEngine
from autopilot.runtime.store.actions import PolicyDecisionRecord
from autopilot.runtime.store.policy_bundles import stored_files

FAILED_CLOSED = {UNAVAILABLE, BUNDLE_MISMATCH}  # no rules judged these: nothing to reproduce


def engine_from_files(files: dict[str, str]) -> RegoEngine:
    """A regopy engine over stored files (written to a temporary folder and compiled;
    the compiled bundle lives on in memory after the folder is gone)."""
    with tempfile.TemporaryDirectory(prefix="bundle-") as tmp:
        root = Path(tmp).resolve()
        for name, text in files.items():
            path = (root / name).resolve()
            if root not in path.parents:
                raise ValueError(f"stored bundle path escapes its folder: {name}")
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
        return RegoEngine(root, pool_size=1)


class Bundles:
    """Engines by bundle hash: today's, and the stored ones compiled on first use."""

    def __init__(self, session: Session, today: PolicyEngine) -> None:
        self.session, self.today = session, today
        self._engines: dict[str, PolicyEngine | None] = {today.bundle_hash: today}

    def get(self, bundle_hash: str) -> PolicyEngine | None:
        if bundle_hash not in self._engines:
            files = stored_files(self.session, bundle_hash)
            self._engines[bundle_hash] = engine_from_files(files) if files is not None else None
        return self._engines[bundle_hash]


def mismatch(row: PolicyDecisionRecord, pinned: Decision) -> str | None:
    """Why the pinned bundle's decision is not the logged one; None if it reproduces."""
    logged = Decision.model_validate(row.result)
    if pinned.input_hash != row.input_hash:
        return f"input hash {pinned.input_hash[:12]} is not the logged {row.input_hash[:12]}"
    if pinned.bundle_hash != row.bundle_hash:
        return f"evaluated by {pinned.bundle_hash[:12]}, logged {row.bundle_hash[:12]}"
    policy_deny = [(v.code, v.msg) for v in logged.deny if not v.code.startswith("agent.")]
    overlay_deny = len(policy_deny) != len(logged.deny)
    if overlay_deny and (policy_deny or not pinned.allow):
        return "the supervisor's agent.* denial sits on a policy denial"
    if not overlay_deny and [(v.code, v.msg) for v in pinned.deny] != policy_deny:
        return (
            f"deny {sorted(v.code for v in pinned.deny)} "
            f"is not the logged {sorted(c for c, _ in policy_deny)}"
        )
    if pinned.obligations != logged.obligations:
        return "obligations differ"
    if overlay_deny:
        return None  # the supervisor replaced the approvals with its denial
    said = {(a.role, a.reason) for a in pinned.approval}
    have = {(a.role, a.reason) for a in logged.approval}
    if not said <= have:
        return f"approval {sorted(said - have)} is missing from the log"
    added = have - said
    if {role for role, _ in added} & set(pinned.roles):
        return "the log adds an approval for a role the policy already asked"
    if pinned.require_approval != logged.require_approval and not added:
        return "require_approval differs"
    return None


@dataclass(frozen=True)
class Regate:
    decision_id: int
    run_key: str
    decided_at: str
    bundle_then: str
    bundle_now: str
    outcome_then: str
    outcome_now: str
    codes_then: list[str]
    codes_now: list[str]
    roles_then: list[str]
    roles_now: list[str]
    pinned_stored: bool
    gap: str | None  # the pinned bundle is not in the store: not reproduced
    reproduces: bool | None  # the pinned bundle gives the logged decision (None: gap/failed)
    mismatch: str | None
    note: str | None  # e.g. the gate failed closed: no rules decided it
    outcome_pinned: str | None
    codes_pinned: list[str]
    roles_pinned: list[str]

    @property
    def differs(self) -> bool:
        """Would it go otherwise today? Policy against policy when the pinned bundle is
        at hand (the supervisor's overlay is the same both days); else the logged one."""
        if self.outcome_pinned is not None:
            then = (self.outcome_pinned, self.codes_pinned, self.roles_pinned)
        else:
            then = (self.outcome_then, self.codes_then, self.roles_then)
        return then != (self.outcome_now, self.codes_now, self.roles_now)


def _roles(d: Decision) -> list[str]:
    return sorted({a.role for a in d.approval})


def regate_row(row: PolicyDecisionRecord, bundles: Bundles) -> Regate:
    assert row.id is not None
    now = decide_raw(bundles.today, row.input)
    codes_then = row.codes.split()
    pinned_engine = bundles.get(row.bundle_hash)
    pinned: Decision | None = None
    gap = why = note = None
    if set(codes_then) & FAILED_CLOSED:
        note = f"the gate failed closed ({' '.join(codes_then)}): no rules decided it"
    elif pinned_engine is None:
        gap = f"pinned bundle {row.bundle_hash[:12]} is not stored: cannot reproduce"
    else:
        pinned = decide_raw(pinned_engine, row.input, pinned_bundle=row.bundle_hash)
        why = mismatch(row, pinned)
    return Regate(
        decision_id=row.id,
        run_key=row.run_key,
        decided_at=row.decided_at.isoformat(),
        bundle_then=row.bundle_hash,
        bundle_now=now.bundle_hash,
        outcome_then=row.outcome,
        outcome_now=now.outcome,
        codes_then=codes_then,
        codes_now=sorted({v.code for v in now.deny}),
        roles_then=recorded_roles(row),
        roles_now=now.roles,
        pinned_stored=pinned_engine is not None,
        gap=gap,
        reproduces=None if pinned is None else why is None,
        mismatch=why,
        note=note,
        outcome_pinned=pinned.outcome if pinned else None,
        codes_pinned=sorted({v.code for v in pinned.deny}) if pinned else [],
        roles_pinned=_roles(pinned) if pinned else [],
    )


def regate_run(session: Session, today: PolicyEngine, workflow_id: str) -> list[Regate]:
    """Every logged gate input of the run (those with an input: a gate refused before
    evaluation, e.g. on a spec mismatch, has nothing to evaluate)."""
    bundles = Bundles(session, today)
    return [regate_row(r, bundles) for r in run_decisions(session, workflow_id) if r.input]
