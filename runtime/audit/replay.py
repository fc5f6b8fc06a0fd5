"""Replay a run for an auditor: its Temporal history against today's workflow code
(determinism), the decision timeline from its audit entries, and every gate input of
the decision log re-evaluated against today's policy engine.

The history is Temporal's; the timeline is the hash-chained audit trail's; the gate
inputs are the decision log's (the full input, so a decision can be evaluated again)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from sqlmodel import Session, col, select
from temporalio.client import Client, WorkflowHistory
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.langgraph import LangGraphPlugin
from temporalio.worker import Replayer

from autopilot.runtime.graph.builder import GRAPH_NAME, build_graph
from autopilot.runtime.policy.engine import PolicyEngine, decide_raw
from autopilot.runtime.store.actions import PolicyDecisionRecord
from autopilot.runtime.store.audit import AuditEntry
from autopilot.workflows.agent_run.workflow import AgentRunWorkflow


async def fetch_history(client: Client, workflow_id: str) -> WorkflowHistory:
    """The newest run's history of this workflow id."""
    return await client.get_workflow_handle(workflow_id).fetch_history()


def read_history(path: Path, workflow_id: str) -> WorkflowHistory:
    """An exported history (`audit export-history`, or the Temporal UI/CLI's JSON)."""
    return WorkflowHistory.from_json(workflow_id, path.read_text())


async def replay_history(history: WorkflowHistory) -> str | None:
    """Replay on today's code, as a worker would; None if it is deterministic, else why not."""
    replayer = Replayer(
        workflows=[AgentRunWorkflow],
        data_converter=pydantic_data_converter,
        plugins=[LangGraphPlugin(graphs={GRAPH_NAME: build_graph()})],
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
        action = d.get("action", {})
        detail = {"tool": action.get("tool"), "args": action.get("args"), "notes": d.get("notes")}
        summary = f"proposed {action.get('tool')} (cost {action.get('expected_cost', 0)})"
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
        detail = {"idempotency_key": key, "status": d.get("status"), "output": d.get("output")}
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


@dataclass(frozen=True)
class Regate:
    decision_id: int
    run_key: str
    bundle_then: str
    bundle_now: str
    outcome_then: str
    outcome_now: str
    codes_then: list[str]
    codes_now: list[str]
    roles_then: list[str]
    roles_now: list[str]

    @property
    def differs(self) -> bool:
        return (self.outcome_then, self.codes_then, self.roles_then) != (
            self.outcome_now,
            self.codes_now,
            self.roles_now,
        )


def regate(session: Session, engine: PolicyEngine, run_keys: list[str]) -> list[Regate]:
    """Each logged gate input of these actions, evaluated again by `engine`."""
    rows = session.exec(
        select(PolicyDecisionRecord)
        .where(col(PolicyDecisionRecord.run_key).in_(run_keys))
        .order_by(col(PolicyDecisionRecord.id))
    )
    out: list[Regate] = []
    for row in rows:
        if not row.input or row.id is None:
            continue  # decided before evaluation (a spec mismatch): nothing to evaluate
        now = decide_raw(engine, row.input)
        out.append(
            Regate(
                decision_id=row.id,
                run_key=row.run_key,
                bundle_then=row.bundle_hash,
                bundle_now=now.bundle_hash,
                outcome_then=row.outcome,
                outcome_now=now.outcome,
                codes_then=row.codes.split(),
                codes_now=sorted({v.code for v in now.deny}),
                roles_then=sorted({a["role"] for a in row.result.get("approval", [])}),
                roles_now=now.roles,
            )
        )
    return out


@dataclass
class ReplayReport:
    workflow_id: str
    events: int
    replay_failure: str | None
    steps: list[Step] = field(default_factory=list)
    regates: list[Regate] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.replay_failure is None and not any(r.differs for r in self.regates)

    def as_json(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "workflow_id": self.workflow_id,
            "history_events": self.events,
            "deterministic": self.replay_failure is None,
            "replay_failure": self.replay_failure,
            "timeline": [asdict(s) for s in self.steps],
            "regate": [{**asdict(r), "differs": r.differs} for r in self.regates],
            "differs": sum(r.differs for r in self.regates),
        }


async def replay_run(
    history: WorkflowHistory, session: Session, engine: PolicyEngine
) -> ReplayReport:
    failure = await replay_history(history)
    steps = timeline(session, history.workflow_id)
    keys = sorted({s.run_key for s in steps})
    return ReplayReport(
        workflow_id=history.workflow_id,
        events=len(history.events),
        replay_failure=failure,
        steps=steps,
        regates=regate(session, engine, keys),
    )
