"""`autopilot schedules …`: the sweep schedules (list, pause, unpause, trigger), and
`autopilot sweep`: one sweep now, through Temporal (a worker must be running)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Annotated, Any

import typer

from autopilot.runtime.cli.output import console, emit_json, fail, finish
from autopilot.runtime.config import get_settings

app = typer.Typer(no_args_is_help=True, help="Sweep schedules: list, pause, unpause, trigger.")
sweep_app = typer.Typer(help="Run one sweep now: start the scheduled agents due on each account.")
JsonOpt = Annotated[bool, typer.Option("--json", help="print one JSON object on stdout")]
NameArg = Annotated[str, typer.Argument(help="an agent (renewal) or a schedule id (sweep:renewal)")]


async def _client() -> Any:
    from autopilot.runtime.devstack.temporal import connect

    settings = get_settings()
    try:
        return await connect(settings.temporal_target, settings.temporal_namespace)
    except RuntimeError as err:
        raise ConnectionError(
            f"Temporal is not reachable at {settings.temporal_target}: "
            "run `autopilot up` or set TEMPORAL_ADDRESS"
        ) from err


def _run(work: Callable[[Any], Awaitable[Any]], as_json: bool) -> Any:
    from temporalio.client import WorkflowFailureError
    from temporalio.service import RPCError

    from autopilot.runtime.schedules import ScheduleNotFound

    async def main() -> Any:
        return await work(await _client())

    try:
        return asyncio.run(main())
    except ScheduleNotFound as err:
        fail(str(err), as_json=as_json)
    except (ConnectionError, RPCError, TimeoutError, WorkflowFailureError) as err:
        fail(f"{type(err).__name__}: {err}", as_json=as_json, code=1)


def _when(value: Any) -> str:
    return value.strftime("%Y-%m-%d %H:%M UTC") if value else "-"


def _show(view: Any) -> None:
    state = "paused" if view.paused else "active"
    console.print(
        f"{view.id:<28} {view.cron or '?':<14} {state:<7} "
        f"next {_when(view.next_run):<21} last {_when(view.last_run)}"
    )


@app.command("list")
def list_(as_json: JsonOpt = False) -> None:
    """The sweep schedules: id, cron (UTC), paused, next run, last run."""
    from autopilot.runtime.schedules import list_schedules

    views = _run(list_schedules, as_json)
    if as_json:
        emit_json({"ok": True, "schedules": [v.as_json() for v in views]})
        finish(0)
    for view in views:
        _show(view)
    console.print(f"{len(views)} schedule(s)")
    finish(0)


def _act(what: str, name: str, as_json: bool) -> None:
    from autopilot.runtime import schedules

    action = getattr(schedules, what)
    view = _run(lambda client: action(client, name), as_json)
    if as_json:
        emit_json({"ok": True, "schedule": view.as_json()})
    else:
        _show(view)
    finish(0)


@app.command()
def pause(name: NameArg, as_json: JsonOpt = False) -> None:
    """Pause a sweep schedule (it stays paused across worker restarts)."""
    _act("pause", name, as_json)


@app.command()
def unpause(name: NameArg, as_json: JsonOpt = False) -> None:
    """Resume a paused sweep schedule."""
    _act("unpause", name, as_json)


@app.command()
def trigger(name: NameArg, as_json: JsonOpt = False) -> None:
    """Start the schedule's sweep now (skipped while one is still running)."""
    _act("trigger", name, as_json)


@sweep_app.callback(invoke_without_command=True)
def sweep(
    agent: Annotated[
        list[str] | None, typer.Option("--agent", help="only this agent (repeatable)")
    ] = None,
    timeout: Annotated[float, typer.Option(help="seconds to wait for the sweep")] = 600,
    as_json: JsonOpt = False,
) -> None:
    """Evaluate every active account now and start the scheduled agents due (each agent
    starts once per account and day, however many sweeps run)."""
    from autopilot.workflows.sweep.activities import SweepInput, SweepResult
    from autopilot.workflows.sweep.workflow import SweepWorkflow

    settings = get_settings()
    wf_id = f"sweep:now:{uuid.uuid4().hex[:12]}"

    async def work(client: Any) -> SweepResult:
        handle = await client.start_workflow(
            SweepWorkflow.run,
            SweepInput(agents=agent or None),
            id=wf_id,
            task_queue=settings.task_queue,
            execution_timeout=timedelta(seconds=timeout),
        )
        return await asyncio.wait_for(handle.result(), timeout=timeout)

    result = _run(work, as_json)
    if as_json:
        emit_json({"ok": True, "workflow_id": wf_id, **result.model_dump()})
        finish(0)
    started = ", ".join(f"{n} {a}" for a, n in result.started.items()) or "none"
    console.print(f"{wf_id}: {result.accounts} account(s) evaluated; runs started: {started}")
    finish(0)
