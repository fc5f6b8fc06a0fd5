"""Temporal Schedules of the sweep: one per scheduled agent, id `sweep:<agent>`, firing
on the agent's cron (UTC) and starting `Sweep([agent])` on the worker's task queue.

`ensure_schedules` makes the server match the specs (created, cron or queue updated,
the schedule of an agent that has none any more deleted) and keeps a pause in force.
A sweep still running when the next one is due is not doubled (overlap: skip), and a
server that was down runs one missed sweep, not one per day missed (catch-up: a day)."""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from typing import Any

from temporalio.api.common.v1 import Payload
from temporalio.client import (
    Client,
    Schedule,
    ScheduleActionStartWorkflow,
    ScheduleAlreadyRunningError,
    ScheduleDescription,
    ScheduleHandle,
    ScheduleOverlapPolicy,
    SchedulePolicy,
    ScheduleSpec,
    ScheduleState,
    ScheduleUpdate,
    ScheduleUpdateInput,
)
from temporalio.service import RPCError, RPCStatusCode

from autopilot.runtime.contracts.agent_spec import AgentSpec
from autopilot.workflows.sweep.activities import SweepInput
from autopilot.workflows.sweep.workflow import SweepWorkflow

PREFIX = "sweep:"
CATCHUP = timedelta(days=1)
log = logging.getLogger(__name__)


class ScheduleNotFound(LookupError):
    def __init__(self, schedule_id: str) -> None:
        self.schedule_id = schedule_id
        super().__init__(f"no schedule '{schedule_id}'")


@dataclass(frozen=True)
class ScheduleView:
    id: str
    cron: str | None
    paused: bool
    next_run: datetime | None
    last_run: datetime | None
    task_queue: str | None
    note: str | None = None

    def as_json(self) -> dict[str, Any]:
        return {k: v.isoformat() if isinstance(v, datetime) else v for k, v in asdict(self).items()}


def schedule_id(name: str) -> str:
    """`renewal` or `sweep:renewal` -> `sweep:renewal`."""
    return name if name.startswith(PREFIX) else PREFIX + name


def _schedule(
    agent: str, cron: str, task_queue: str, state: ScheduleState | None = None
) -> Schedule:
    return Schedule(
        action=ScheduleActionStartWorkflow(
            SweepWorkflow.run,
            SweepInput(agents=[agent]),
            id=schedule_id(agent),  # the server appends the fire time
            task_queue=task_queue,
            memo={"cron": cron},  # the server keeps the cron only as calendars: shown from here
        ),
        spec=ScheduleSpec(cron_expressions=[cron]),  # no time zone: UTC, as the spec says
        policy=SchedulePolicy(overlap=ScheduleOverlapPolicy.SKIP, catchup_window=CATCHUP),
        state=state or ScheduleState(),
    )


def _decoded(client: Client, schedule: Schedule) -> tuple[str | None, str | None]:
    """The cron and task queue a schedule's sweep action carries."""
    action = schedule.action
    if not isinstance(action, ScheduleActionStartWorkflow):
        return None, None
    raw = (action.memo or {}).get("cron")
    if isinstance(raw, Payload):
        raw = client.data_converter.payload_converter.from_payload(raw, str)
    return (raw if isinstance(raw, str) else None), action.task_queue


async def ensure_schedules(
    client: Client, specs: dict[str, AgentSpec], task_queue: str
) -> dict[str, str]:
    """One schedule per scheduled agent; returns what happened to each schedule id:
    created, updated, unchanged or deleted. Idempotent; safe from several workers."""
    wanted = {schedule_id(n): (n, s.schedule) for n, s in specs.items() if s.schedule}
    done: dict[str, str] = {}
    for sid, (agent, cron) in sorted(wanted.items()):
        try:
            await client.create_schedule(sid, _schedule(agent, cron, task_queue))
            done[sid] = "created"
            continue
        except ScheduleAlreadyRunningError:
            pass
        changed = False

        def updated(
            inp: ScheduleUpdateInput, agent: str = agent, cron: str = cron
        ) -> ScheduleUpdate | None:
            nonlocal changed
            now = inp.description.schedule
            if _decoded(client, now) == (cron, task_queue) and _is_sweep(now):
                return None
            changed = True  # a new cron or queue; a pause (and its note) stays in force
            return ScheduleUpdate(_schedule(agent, cron, task_queue, now.state))

        await client.get_schedule_handle(sid).update(updated)
        done[sid] = "updated" if changed else "unchanged"
    for view in await list_schedules(client):
        # Another deployment's sweeps (another task queue) are not ours to remove.
        if view.id not in wanted and view.task_queue == task_queue:
            try:
                await client.get_schedule_handle(view.id).delete()
            except RPCError as err:
                if err.status != RPCStatusCode.NOT_FOUND:
                    raise
            done[view.id] = "deleted"
    return done


def _is_sweep(schedule: Schedule) -> bool:
    action = schedule.action
    return (
        isinstance(action, ScheduleActionStartWorkflow)
        and action.workflow == "Sweep"
        and schedule.policy.overlap == ScheduleOverlapPolicy.SKIP
    )


def _view(client: Client, sid: str, d: ScheduleDescription) -> ScheduleView:
    cron, queue = _decoded(client, d.schedule)
    paused = d.schedule.state.paused
    return ScheduleView(
        id=sid,
        cron=cron,
        paused=paused,
        next_run=None if paused or not d.info.next_action_times else d.info.next_action_times[0],
        last_run=d.info.recent_actions[-1].started_at if d.info.recent_actions else None,
        task_queue=queue,
        note=d.schedule.state.note,
    )


async def list_schedules(client: Client) -> list[ScheduleView]:
    """The sweep schedules on the server, by id (the listing is eventually consistent:
    one created a moment ago may not be in it yet)."""
    views = []
    async for listed in await client.list_schedules():
        if not listed.id.startswith(PREFIX):
            continue
        try:
            views.append(await describe(client, listed.id))
        except ScheduleNotFound:  # deleted since it was listed
            continue
    return sorted(views, key=lambda v: v.id)


async def _call(handle: ScheduleHandle, what: str, **kwargs: Any) -> Any:
    try:
        return await getattr(handle, what)(**kwargs)
    except RPCError as err:
        if err.status == RPCStatusCode.NOT_FOUND:
            raise ScheduleNotFound(handle.id) from err
        raise


async def describe(client: Client, name: str) -> ScheduleView:
    handle = client.get_schedule_handle(schedule_id(name))
    return _view(client, handle.id, await _call(handle, "describe"))


async def pause(client: Client, name: str, note: str = "paused by autopilot") -> ScheduleView:
    handle = client.get_schedule_handle(schedule_id(name))
    await _call(handle, "pause", note=note)
    return await describe(client, name)


async def unpause(client: Client, name: str, note: str = "unpaused by autopilot") -> ScheduleView:
    handle = client.get_schedule_handle(schedule_id(name))
    await _call(handle, "unpause", note=note)
    return await describe(client, name)


async def trigger(client: Client, name: str) -> ScheduleView:
    """Start the schedule's sweep now (skipped if one is still running)."""
    handle = client.get_schedule_handle(schedule_id(name))
    await _call(handle, "trigger")
    return await describe(client, name)
