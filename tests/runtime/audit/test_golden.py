"""Golden histories: one recorded run of every shipped agent (agents/*.yaml), replayed
with Temporal's Replayer against today's workflow code. A change to the workflow or the
graph that would break runs already in flight (a command added, removed or reordered)
fails here, in CI, instead of in production. The Replayer needs no server.

Regenerate (after an intended, versioned workflow change, or when an agent is added):

    AUTOPILOT_REGENERATE_GOLDEN=1 .venv/bin/pytest tests/runtime/audit/test_golden.py -k record

It records each agent's first run on the embedded stack (Temporal dev server, regopy,
SQLite, the SMTP sink, the reference CRM) into tests/runtime/audit/golden/<agent>.json,
as `{"agent", "workflow_id", "history"}`: the history in Temporal's JSON format, beside
the id it ran under (the run derives its approval ids from it, so it must replay under
the same id); `autopilot audit replay --history` reads these files too."""

from __future__ import annotations

import json
import os
from collections.abc import Awaitable, Callable
from datetime import timedelta
from pathlib import Path

import pytest
from sqlmodel import Session, col, select
from temporalio import workflow
from temporalio.client import WorkflowHistory

from autopilot.runtime.accounts.ingest import Stored
from autopilot.runtime.agents.triggers import SCHEDULE_EVENT
from autopilot.runtime.audit.replay import read_history, replay_history
from autopilot.runtime.contracts.run import AgentRunInput, AgentRunResult
from autopilot.runtime.devstack.scenarios import drop_events
from autopilot.runtime.store.accounts import Contact
from autopilot.runtime.store.events import Event
from autopilot.workflows.agent_run.workflow import AgentRunWorkflow
from tests.conftest import REPO, Stack
from tests.tools.test_connectors import crm  # noqa: F401 - the reference CRM (renewal's forecast)
from tests.workflows.test_agent_scenarios import (  # noqa: F401 - `sk`: the scenario stack
    _set,
    _start_adoption,
    _start_expansion,
    first_stretch,
    sk,
    until_done,
)

GOLDEN = Path(__file__).parent / "golden"
AGENTS = sorted(p.stem for p in (REPO / "agents").glob("*.yaml"))
REGENERATE = os.environ.get("AUTOPILOT_REGENERATE_GOLDEN") == "1"


# Histories of runs from before today's workflow: every vote stored by a local activity
# inside its Update (before the deciding one rode in the answer to the next step);
# before that, started by signal-with-start with two local activities per auto-allowed
# action; the same with the vote recorded by an activity; the fused graph; and the
# five-node graph before it.
# Kept, since runs started then must still replay on a worker of today.
FIVE_NODE = GOLDEN / "five_node"
ERAS = {
    "vote_in_step": GOLDEN,
    "prepare_act": GOLDEN / "prepare_act",
    "vote_local": GOLDEN / "vote_local",
    "local": GOLDEN / "local",
    "fused": GOLDEN / "fused",
    "five_node": FIVE_NODE,
}
GRAPHS = {
    "vote_in_step": "agent_local",
    "prepare_act": "agent_local",
    "vote_local": "agent_local",
    "local": "agent_local",
    "fused": "agent_fused",
    "five_node": "agent",
}


def golden(agent: str, era: str = "vote_in_step") -> WorkflowHistory:
    path = ERAS[era] / f"{agent}.json"
    assert path.exists(), f"no golden history for agent {agent}: regenerate ({__doc__})"
    history = read_history(path, "")
    assert history.workflow_id.startswith(f"agent:{agent}:")
    return history


def test_every_shipped_agent_has_a_golden_history() -> None:
    assert {"adoption", "churn_rescue", "compliance", "expansion", "renewal"} <= set(AGENTS)
    assert set(STARTS) == set(AGENTS), "a new agent needs a recipe in STARTS, then a recording"
    assert sorted(p.stem for p in GOLDEN.glob("*.json")) == AGENTS
    assert sorted(p.stem for p in ERAS["prepare_act"].glob("*.json")) == AGENTS
    assert sorted(p.stem for p in ERAS["vote_local"].glob("*.json")) == AGENTS
    assert sorted(p.stem for p in ERAS["local"].glob("*.json")) == AGENTS
    assert sorted(p.stem for p in ERAS["fused"].glob("*.json")) == AGENTS
    assert {p.stem for p in FIVE_NODE.glob("*.json")} >= {"adoption", "renewal", "compliance"}


@pytest.mark.parametrize("era", sorted(ERAS))
@pytest.mark.parametrize("agent", AGENTS)
async def test_the_golden_history_replays_on_todays_code(agent: str, era: str) -> None:
    if not (ERAS[era] / f"{agent}.json").exists():
        pytest.skip(f"no {era} history of {agent}")
    history = golden(agent, era)
    # The graph's steps: activities, or (the local path) local activities' markers.
    activities = {
        e.activity_task_scheduled_event_attributes.activity_type.name
        for e in history.events
        if e.HasField("activity_task_scheduled_event_attributes")
    } | {
        json.loads(e.marker_recorded_event_attributes.details["data"].payloads[0].data)[
            "activity_type"
        ]
        for e in history.events
        if e.HasField("marker_recorded_event_attributes")
        and e.marker_recorded_event_attributes.marker_name == "core_local_activity"
    }
    assert any(a.startswith(f"{GRAPHS[era]}.") for a in activities), activities
    kinds = {e.WhichOneof("attributes") for e in history.events}
    # A whole first run: it gated and acted, and ended or continued as new.
    assert kinds & {
        "activity_task_completed_event_attributes",
        "marker_recorded_event_attributes",
    }
    assert kinds & {
        "workflow_execution_completed_event_attributes",
        "workflow_execution_continued_as_new_event_attributes",
    }
    assert await replay_history(history) is None


# Unsandboxed: the sandbox would re-import this test module, which reads files at import.
@workflow.defn(name="AgentRun", sandboxed=False)
class ReorderedRun(AgentRunWorkflow):
    """A mutant: the run starts a timer the recorded runs never started (what an
    unversioned edit of the workflow does to the runs in flight)."""

    @workflow.run
    async def run(self, inp: AgentRunInput) -> AgentRunResult:
        await workflow.sleep(timedelta(seconds=1))
        return await super().run(inp)


@pytest.mark.parametrize("agent", AGENTS)
async def test_a_non_deterministic_workflow_change_fails_the_golden_replay(agent: str) -> None:
    failure = await replay_history(golden(agent), workflow=ReorderedRun)
    assert failure is not None and "Nondeterminism" in failure


# --- recording (only with AUTOPILOT_REGENERATE_GOLDEN=1) -------------------------------


async def _adoption(stack: Stack) -> str:
    _, wf_id = await _start_adoption(stack)
    return wf_id


async def _renewal(stack: Stack) -> str:
    (account,) = stack.pick("smb", max_arr=50_000)
    _set(stack, account, renewal_date=stack.services.clock().date() + timedelta(days=90))
    (wf_id,) = await stack.post_events([{"account_id": account, "type": "invoice", "amount": 1e3}])
    return wf_id


async def _expansion(stack: Stack) -> str:
    _, wf_id = await _start_expansion(stack)
    return wf_id


async def _churn_rescue(stack: Stack) -> str:
    (account,) = stack.pick("smb", max_arr=50_000)
    (wf_id,) = await stack.post_events(drop_events(stack.db, account))
    return wf_id


async def _dispatch(stack: Stack, account: str, agent: str, type_: str, payload: dict) -> str:
    """Store an event and start `agent` on it (types POST /events does not take)."""
    with Session(stack.db) as s:
        now = stack.services.clock()
        event = Event(
            account_id=account, type=type_, occurred_at=now, received_at=now, payload=payload
        )
        s.add(event)
        s.commit()
        assert event.id is not None
        stored = Stored(event_id=event.id, account_id=account, type=type_, agents=[agent])
    (started,) = await stack.ingest.dispatch([stored])
    return started.workflow_id


async def _copilot(stack: Stack) -> str:
    """What the Copilot panel's "do it" stores: a `copilot` event naming a step."""
    (account,) = stack.pick("smb", max_arr=50_000)
    return await _dispatch(stack, account, "copilot", "copilot", {"kind": "csm_task"})


async def _compliance(stack: Stack) -> str:
    """A schedule event on an account whose sponsor has had no pre-use notice."""
    with Session(stack.db) as s:
        sponsored = set(
            s.exec(select(Contact.account_id).where(Contact.role == "executive_sponsor"))
        )
    picked = stack.pick("smb", n=20, max_arr=50_000, strict=False)
    account = next(a for a in picked if a in sponsored)
    (rescue,) = await stack.post_events(drop_events(stack.db, account))
    await first_stretch(stack, rescue)
    with Session(stack.db) as s:
        sponsor = s.exec(
            select(Contact)
            .where(Contact.account_id == account, Contact.role == "executive_sponsor")
            .order_by(col(Contact.id))
        ).first()
        assert sponsor is not None
        sponsor.notice_at = None
        s.add(sponsor)
        s.commit()
    return await _dispatch(stack, account, "compliance", SCHEDULE_EVENT, {})


STARTS: dict[str, Callable[[Stack], Awaitable[str]]] = {
    "adoption": _adoption,
    "churn_rescue": _churn_rescue,
    "compliance": _compliance,
    "copilot": _copilot,
    "expansion": _expansion,
    "renewal": _renewal,
}


@pytest.mark.skipif(not REGENERATE, reason="set AUTOPILOT_REGENERATE_GOLDEN=1 to re-record")
@pytest.mark.parametrize("agent", AGENTS)
async def test_record_golden_history(agent: str, sk: Stack) -> None:  # noqa: F811
    wf_id = await STARTS[agent](sk)
    assert wf_id.startswith(f"agent:{agent}:")
    first_run = (await sk.client.get_workflow_handle(wf_id).describe()).run_id
    if agent == "churn_rescue":  # its first stretch, then a person takes over: it ends
        await first_stretch(sk, wf_id)
        await sk.post_events([{"account_id": wf_id.rsplit(":", 1)[1], "type": "csm_takeover"}])
    await until_done(sk, wf_id)  # approving whatever it asks, through its waits
    # The first run whole: its gates, approvals and actions, to its continue-as-new.
    history = await sk.client.get_workflow_handle(wf_id, run_id=first_run).fetch_history()
    GOLDEN.mkdir(exist_ok=True)
    record = {"agent": agent, "workflow_id": wf_id, "history": json.loads(history.to_json())}
    (GOLDEN / f"{agent}.json").write_text(json.dumps(record, indent=1, sort_keys=True) + "\n")
    assert await replay_history(history) is None
