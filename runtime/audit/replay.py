"""Replay a run for an auditor: its Temporal history against today's workflow code
(determinism), the decision timeline from its audit entries, and every gate input of
the decision log re-evaluated against the bundle its run pinned (it must reproduce) and
against today's (what would differ); see `regate.py`.

The history is Temporal's; the timeline is the hash-chained audit trail's; the gate
inputs are the decision log's (the full input, so a decision can be evaluated again);
the trigger events, score and costs are the store's (`context.py`). No redaction is
applied: the report shows what the store holds, to whoever may read the store."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from sqlmodel import Session, col, select
from temporalio.client import Client, WorkflowHistory
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.langgraph import LangGraphPlugin
from temporalio.worker import Replayer

from autopilot.runtime.audit.context import RunContext, run_context
from autopilot.runtime.audit.regate import Regate, regate_run
from autopilot.runtime.graph.builder import build_graphs
from autopilot.runtime.policy.engine import PolicyEngine
from autopilot.runtime.store.audit import AuditEntry
from autopilot.workflows.agent_run.workflow import AgentRunWorkflow


async def fetch_history(client: Client, workflow_id: str) -> WorkflowHistory:
    """The newest run's history of this workflow id."""
    return await client.get_workflow_handle(workflow_id).fetch_history()


def read_history(path: Path, workflow_id: str) -> WorkflowHistory:
    """An exported history (`audit export-history`, or the Temporal UI/CLI's JSON), or a
    golden file (`{"workflow_id", "history"}`, whose recorded id wins). The id matters:
    the run derives its approval ids from it, so replay under another id fails."""
    text = path.read_text()
    data = json.loads(text)
    if isinstance(data, dict) and "history" in data and "workflow_id" in data:
        return WorkflowHistory.from_json(str(data["workflow_id"]), data["history"])
    return WorkflowHistory.from_json(workflow_id, text)


async def replay_history(history: WorkflowHistory, workflow: type = AgentRunWorkflow) -> str | None:
    """Replay on today's code, as a worker would; None if it is deterministic, else why not.
    (`workflow`: another definition of the run, e.g. a deliberately changed one in a test.)"""
    replayer = Replayer(
        workflows=[workflow],
        data_converter=pydantic_data_converter,
        plugins=[LangGraphPlugin(graphs=build_graphs())],
    )
    result = await replayer.replay_workflow(history, raise_on_replay_failure=False)
    if result.replay_failure is None:
        return None
    return f"{type(result.replay_failure).__name__}: {result.replay_failure}"


@dataclass(frozen=True)
class Step:
    seq: int
    at: str
    run_key: str
    step: str
    actor: str
    summary: str
    detail: dict[str, Any]


def _step(row: AuditEntry) -> Step:
    d, detail = row.decision, {}
    if row.step == "plan":
        action, assessment = d.get("action", {}), d.get("assessment") or {}
        detail = {
            "tool": action.get("tool"),
            "args": action.get("args"),
            "notes": d.get("notes"),
            # What the planner was given (Health 2.0's figure and its reasons) and gave.
            "input": {"assessment": assessment, "input_hash": row.input_hash},
            "output": action,
            "score": {"health": assessment.get("health"), "risk": assessment.get("risk")},
            "explanation": assessment.get("reasons", []),
        }
        summary = f"proposed {action.get('tool')} (cost {action.get('expected_cost', 0)})"
        if assessment:
            summary += f"; health {assessment.get('health')}, risk {assessment.get('risk')}"
    elif row.step == "gate":
        codes = [v.get("code") for v in d.get("deny", [])]
        roles = sorted({a.get("role") for a in d.get("approval", [])})
        verdict = (
            "deny" if not d.get("allow") else "approval" if d.get("require_approval") else "allow"
        )
        detail = {
            "bundle_hash": row.bundle_hash,
            "input_hash": row.input_hash,
            "outcome": verdict,
            "codes": codes,
            "roles": roles,
            # The rules that fired: each denial and approval with its reason.
            "deny": d.get("deny", []),
            "approval": d.get("approval", []),
            "obligations": d.get("obligations", []),
            "conflicts": d.get("conflicts", []),
        }
        summary = (
            f"{verdict} by bundle {row.bundle_hash[:12]}"
            + (f" codes {' '.join(codes)}" if codes else "")
            + (f" needs {','.join(roles)}" if roles else "")
        )
    elif row.step == "approve":
        detail = {
            "verdict": d.get("verdict"),
            "by": d.get("actor"),
            "decided_at": d.get("decided_at"),
            "reason": d.get("reason"),
            "edited": d.get("action") is not None,
        }
        summary = f"{d.get('verdict')} by {d.get('actor')} at {d.get('decided_at')}"
    elif row.step == "execute":
        key = d.get("idempotency_key") or row.run_key
        detail = {
            "tool": d.get("tool"),
            "idempotency_key": key,
            "status": d.get("status"),
            "output": d.get("output"),
        }
        summary = f"{d.get('tool', '')} {d.get('status')} key {key}".strip()
    else:
        detail = dict(d)
        summary = f"status {d.get('status')}" if "status" in d else row.step
    assert row.seq is not None
    return Step(row.seq, row.at.isoformat(), row.run_key, row.step, row.actor, summary, detail)


def timeline(session: Session, workflow_id: str) -> list[Step]:
    rows = session.exec(
        select(AuditEntry)
        .where(AuditEntry.workflow_id == workflow_id)
        .order_by(col(AuditEntry.seq))
    )
    return [_step(r) for r in rows]


@dataclass
class ReplayReport:
    workflow_id: str
    events: int
    replay_failure: str | None
    steps: list[Step] = field(default_factory=list)
    regates: list[Regate] = field(default_factory=list)
    context: RunContext | None = None
    bundle_now: str = ""

    @property
    def mismatches(self) -> list[Regate]:
        return [r for r in self.regates if r.reproduces is False]

    @property
    def gaps(self) -> list[Regate]:
        return [r for r in self.regates if r.gap]

    @property
    def ok(self) -> bool:
        """Deterministic, every decision reproduced by its pinned bundle (none missing),
        and none would differ today."""
        return (
            self.replay_failure is None
            and not self.mismatches
            and not self.gaps
            and not any(r.differs for r in self.regates)
        )

    def as_json(self) -> dict[str, Any]:
        ctx = self.context
        return {
            "ok": self.ok,
            "workflow_id": self.workflow_id,
            "history_events": self.events,
            "deterministic": self.replay_failure is None,
            "replay_failure": self.replay_failure,
            "timeline": [asdict(s) for s in self.steps],
            "regate": [{**asdict(r), "differs": r.differs} for r in self.regates],
            "differs": sum(r.differs for r in self.regates),
            "mismatches": len(self.mismatches),
            "gaps": len(self.gaps),
            "bundle_now": self.bundle_now,
            "account_id": ctx.account_id if ctx else None,
            "trigger_events": [asdict(e) for e in ctx.events] if ctx else [],
            "score": asdict(ctx.score) if ctx and ctx.score else None,
            "costs": [asdict(c) for c in ctx.costs] if ctx else [],
            "cost_expected": ctx.total_expected if ctx else 0.0,
            "cost_booked": ctx.total_booked if ctx else 0.0,
        }


async def replay_run(
    history: WorkflowHistory, session: Session, engine: PolicyEngine
) -> ReplayReport:
    """`engine` is today's; the pinned bundles come from the store."""
    failure = await replay_history(history)
    steps = timeline(session, history.workflow_id)
    keys = sorted({s.run_key for s in steps})
    return ReplayReport(
        workflow_id=history.workflow_id,
        events=len(history.events),
        replay_failure=failure,
        steps=steps,
        regates=regate_run(session, engine, history.workflow_id),
        context=run_context(session, history.workflow_id, keys),
        bundle_now=engine.bundle_hash,
    )
