"""Unknown outcomes from the command line: `approvals outcomes` lists the checks a person
may see, `approvals resolve` says what happened (runtime/execution/outcomes.py)."""

from __future__ import annotations

from typing import Annotated

import typer

from autopilot.runtime.cli.output import console, emit_json, fail, finish
from autopilot.runtime.cli.people import AsOpt, principal_of
from autopilot.runtime.config import get_settings

JsonOpt = Annotated[bool, typer.Option("--json", help="print one JSON object on stdout")]


def approvals_outcomes(
    user: AsOpt, as_json: JsonOpt = False, status: str = "open", limit: int = 200
) -> None:
    """Actions whose outcome is unknown (an email whose reply was lost, a worker killed
    mid-call): check each, then `approvals resolve`."""
    from autopilot.runtime.execution.outcomes import visible_checks
    from autopilot.runtime.services import build_services

    p = principal_of(user, as_json)
    rows = visible_checks(build_services(get_settings()), p, status=status, limit=limit)
    if as_json:
        emit_json({"ok": True, "outcomes": [r.model_dump(mode="json") for r in rows]})
        finish(0)
    for r in rows:
        console.print(f"{r.run_key}  {r.status:<8} {r.account_id:<10} {r.tool:<11} {r.error[:60]}")
    console.print(f"{len(rows)} check(s)")
    finish(0)


def approvals_resolve(
    run_key: str,
    user: AsOpt,
    outcome: Annotated[str, typer.Option("--outcome", help="sent | not_sent | resend")],
    note: str = "",
    as_json: JsonOpt = False,
) -> None:
    """Say what happened to an action with an unknown outcome; `resend` is gated again
    and sent with the same key by the worker's reconciler."""
    from autopilot.runtime.execution.outcomes import CheckError, resolve_as
    from autopilot.runtime.services import build_services

    if outcome not in ("sent", "not_sent", "resend"):
        fail("--outcome: one of sent, not_sent, resend", as_json=as_json)
    p = principal_of(user, as_json)
    try:
        status = resolve_as(
            build_services(get_settings()),
            p,
            run_key=run_key,
            verdict=outcome,
            note=note,  # type: ignore[arg-type]
        )
    except CheckError as err:
        fail(f"{err.code}: {err}", as_json=as_json)
    if as_json:
        emit_json({"ok": True, "run_key": run_key, "status": status})
    else:
        console.print(f"{run_key}: {status}")
    finish(0)


def register(approvals: typer.Typer) -> None:
    approvals.command("outcomes")(approvals_outcomes)
    approvals.command("resolve")(approvals_resolve)
