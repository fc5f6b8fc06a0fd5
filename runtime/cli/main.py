"""The `autopilot` command."""

from __future__ import annotations

import asyncio
import json
import logging
import signal
from pathlib import Path
from typing import Annotated, Any

import typer
from pydantic import ValidationError

from autopilot.runtime.cli.accounts import accounts_app, metrics_app
from autopilot.runtime.cli.agents import app as agents_app
from autopilot.runtime.cli.audit import app as audit_app
from autopilot.runtime.cli.bench import bench as bench_cmd
from autopilot.runtime.cli.compliance import app as compliance_app
from autopilot.runtime.cli.db import app as db_app
from autopilot.runtime.cli.history import app as history_app
from autopilot.runtime.cli.kb import app as kb_app
from autopilot.runtime.cli.llm import app as llm_app
from autopilot.runtime.cli.mcp import app as mcp_app
from autopilot.runtime.cli.model import model_app
from autopilot.runtime.cli.outcomes import register as register_outcomes
from autopilot.runtime.cli.output import console, emit_json, fail, finish
from autopilot.runtime.cli.people import AsOpt
from autopilot.runtime.cli.people import principal_of as _principal
from autopilot.runtime.cli.policy import app as policy_app
from autopilot.runtime.cli.privacy import app as privacy_app
from autopilot.runtime.cli.schedules import app as schedules_app
from autopilot.runtime.cli.schedules import sweep_app
from autopilot.runtime.cli.simulate import simulate_cmd
from autopilot.runtime.cli.tools import app as tools_app
from autopilot.runtime.cli.users import app as users_app
from autopilot.runtime.config import get_settings

app = typer.Typer(
    no_args_is_help=True, add_completion=False, help="CS Autopilot: policy-gated CS agents."
)
events_app = typer.Typer(no_args_is_help=True, help="Feed account events.")
approvals_app = typer.Typer(no_args_is_help=True, help="Work the approval inbox.")
app.add_typer(events_app, name="events")
app.add_typer(history_app, name="history")
app.add_typer(approvals_app, name="approvals")
register_outcomes(approvals_app)
app.add_typer(policy_app, name="policy")
app.add_typer(users_app, name="users")
app.add_typer(model_app, name="model")
app.add_typer(accounts_app, name="accounts")
app.add_typer(metrics_app, name="metrics")
app.add_typer(tools_app, name="tools")
app.add_typer(mcp_app, name="mcp")
app.add_typer(kb_app, name="kb")
app.add_typer(schedules_app, name="schedules")
app.add_typer(sweep_app, name="sweep")
app.add_typer(agents_app, name="agents")
app.add_typer(audit_app, name="audit")
app.add_typer(compliance_app, name="compliance")
app.add_typer(db_app, name="db")
app.add_typer(llm_app, name="llm")
app.add_typer(privacy_app, name="privacy")
runs_app = typer.Typer(no_args_is_help=True, help="Agent runs: roll back.")
app.add_typer(runs_app, name="runs")
app.command("simulate")(simulate_cmd)
app.command("bench")(bench_cmd)  # the runner is in evals/, started as a child process

JsonOpt = Annotated[bool, typer.Option("--json", help="print one JSON object on stdout")]


@app.command()
def up() -> None:
    """Start Temporal (dev server), the worker, the API and the SMTP sink; seed the demo portfolio."""
    from autopilot.runtime.devstack.stack import running_stack

    settings = get_settings()
    logging.basicConfig(level=logging.WARNING)

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (
            signal.SIGINT,
            signal.SIGTERM,
        ):  # also when started with SIGINT ignored (nohup, &)
            loop.add_signal_handler(sig, stop.set)
        async with running_stack(settings) as stack:
            console.print(f"[bold]CS Autopilot is up[/bold] (seeded {stack.seeded} accounts)")
            for name, url in stack.urls.items():
                console.print(f"  {name:<12} {url}")
            console.print("Ctrl-C stops everything.")
            await stop.wait()
            console.print("stopping…")

    try:
        asyncio.run(main())
    except (RuntimeError, OSError) as err:  # top level: a port in use, a server that did not start
        fail(str(err), as_json=False, code=1)
    console.print("stopped")
    finish(0)


@app.command()
def worker() -> None:
    """Run a worker only, against TEMPORAL_ADDRESS and DATABASE_URL, with the event
    dispatcher beside it (it starts the runs of events stored while Temporal was down)."""
    from autopilot.runtime.accounts.ingest import Ingest
    from autopilot.runtime.devstack.temporal import connect
    from autopilot.runtime.services import build_services, watch_policies
    from autopilot.runtime.worker import beside_worker, build_worker

    settings = get_settings()
    from autopilot.runtime.observability import serve_worker_metrics

    serve_worker_metrics(settings)  # logs, traces, and the counters on their own port

    async def main() -> None:
        client = await connect(settings.temporal_target, settings.temporal_namespace)
        services = build_services(settings)
        watch_policies(services.policy)
        ingest = Ingest(
            services.db,
            client,
            services.specs,
            task_queue=settings.task_queue,
            policy=services.policy,
        )
        async with beside_worker(ingest, services):
            await build_worker(client, services, settings.task_queue).run()

    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        pass
    finish(0)


@app.command()
def demo(as_json: JsonOpt = False) -> None:
    """Run the scripted scenario on the embedded components and report what happened."""
    from autopilot.runtime.devstack.demo import run_demo

    say = (lambda _msg: None) if as_json else console.print
    try:
        summary = asyncio.run(run_demo(get_settings(), say))
    except Exception as err:  # noqa: BLE001 - top level: report and exit non-zero
        fail(f"demo failed: {type(err).__name__}: {err}", as_json=as_json, code=1)
    if as_json:
        emit_json(summary)
    finish(0)


async def _client_services() -> tuple[Any, Any]:
    from autopilot.runtime.devstack.temporal import connect
    from autopilot.runtime.store.db import make_engine

    settings = get_settings()
    try:
        client = await connect(settings.temporal_target, settings.temporal_namespace)
    except RuntimeError as err:
        raise ConnectionError(
            f"Temporal is not reachable at {settings.temporal_target}: "
            "run `autopilot up` or set TEMPORAL_ADDRESS"
        ) from err
    return client, make_engine(settings.db_url)


IMPORT_BATCH = 500  # events per transaction: a long import never holds the write lock for long


@events_app.command("import")
def events_import(file: Path, as_json: JsonOpt = False) -> None:
    """Import a JSONL file of events, stored in batches of 500 so the store's write lock
    is released between them and the API keeps answering. A line that is not a valid
    event, or names an unknown account, is reported as FILE:LINE before anything is
    stored. An event the account's subscriptions cannot take (a change to no running
    subscription, say) is only found as its batch is stored: the error names FILE:LINE,
    that batch and the ones after it are not stored, and the batches before it stay
    stored, their runs started. Events with an `id` are not stored twice, so the
    corrected file can be imported again; events without one would be."""
    from autopilot.runtime.accounts.ingest import Ingest, UnknownAccount
    from autopilot.runtime.accounts.subscription_events import SubscriptionEventError
    from autopilot.runtime.agents.specs import load_specs
    from autopilot.runtime.services import make_policy_engine

    try:
        events = parse_jsonl(file)
    except (OSError, ValueError) as err:
        fail(str(err), as_json=as_json)
    settings = get_settings()

    async def main() -> dict[str, Any]:
        client, db = await _client_services()
        ingest = Ingest(
            db,
            client,
            load_specs(settings.agents_path),
            task_queue=settings.task_queue,
            policy=make_policy_engine(settings),
        )
        unknown = ingest.unknown_accounts(events)
        if unknown:
            i = unknown[0]
            raise ValueError(
                f"{file}:{lines[i]}: account_id: {UnknownAccount(i, events[i].account_id)}"
            )
        stored, started = [], []
        for at in range(0, len(events), IMPORT_BATCH):
            try:
                batch = ingest.store(events[at : at + IMPORT_BATCH])
            except SubscriptionEventError as err:  # batches before it are stored
                line = lines[at + err.index]
                raise ValueError(f"{file}:{line}: {err.field}: {err.problem}") from None
            stored += [s for s in batch if not s.again]
            started += await ingest.dispatch([s for s in batch if not s.again])
        return {
            "ok": True,
            "imported": len(stored),
            "again": len(events) - len(stored),  # delivered before (same `id`): not stored
            "started": [s.workflow_id for s in started],
        }

    lines = [n for n, _ in _numbered(file)]
    try:
        result = asyncio.run(main())
    except (ValueError, ConnectionError) as err:
        fail(str(err), as_json=as_json)
    if as_json:
        emit_json(result)
    else:
        console.print(
            f"imported {result['imported']} events; started {len(result['started'])} run(s)"
        )
    finish(0)


def _numbered(file: Path) -> list[tuple[int, str]]:
    return [(n, line) for n, line in enumerate(file.read_text().splitlines(), 1) if line.strip()]


def parse_jsonl(file: Path) -> list[Any]:
    """Validate every line first; the first bad one raises `file:line: field: problem`."""
    from autopilot.runtime.contracts.event import EventIn

    events = []
    for n, line in _numbered(file):
        try:
            events.append(EventIn.model_validate(json.loads(line)))
        except json.JSONDecodeError as err:
            raise ValueError(f"{file}:{n}: not JSON: {err.msg}") from None
        except ValidationError as err:
            first = err.errors()[0]
            field = ".".join(str(p) for p in first["loc"]) or "<event>"
            raise ValueError(f"{file}:{n}: {field}: {first['msg']}") from None
    return events


async def _inbox() -> Any:
    from autopilot.runtime.approvals.service import Inbox
    from autopilot.runtime.services import build_services

    client, _ = await _client_services()
    return Inbox(build_services(get_settings()), client)


@approvals_app.command("list")
def approvals_list(user: AsOpt, as_json: JsonOpt = False, status: str = "pending") -> None:
    """List the approvals a user may see (pending by default)."""
    from autopilot.runtime.approvals.service import Inbox
    from autopilot.runtime.services import build_services

    p = _principal(user, as_json)
    items = Inbox(build_services(get_settings()), None).list(p, status=status or None)  # type: ignore[arg-type]
    if as_json:
        emit_json({"ok": True, "approvals": [i.model_dump(mode="json") for i in items]})
        finish(0)
    for i in items:
        console.print(
            f"{i.id}  {i.status:<8} {i.account_id:<10} {i.tool:<11} roles={','.join(i.roles)}"
            f"{'  you decide as ' + i.can_decide_as if i.can_decide_as else ''}"
        )
    console.print(f"{len(items)} approval(s)")
    finish(0)


def _decide(approval_id: str, verdict: str, user: str, reason: str, as_json: bool) -> None:
    from autopilot.runtime.approvals.models import DecisionCreate
    from autopilot.runtime.approvals.service import InboxError

    p = _principal(user, as_json)

    async def decide() -> Any:
        inbox = await _inbox()
        item = inbox.get(p, approval_id)
        body = DecisionCreate(verdict=verdict, reason=reason, payload_hash=item.payload_hash)  # type: ignore[arg-type]
        return await inbox.decide(p, approval_id, body)

    try:
        outcome = asyncio.run(decide())
    except (InboxError, ConnectionError, ValidationError) as err:
        fail(f"{type(err).__name__}: {err}", as_json=as_json)
    if as_json:
        emit_json({"ok": True, **outcome.model_dump(mode="json")})
    else:
        console.print(
            f"{outcome.approval_id}: {outcome.status} (vote by {outcome.actor})"
            f"{'; still needs ' + ', '.join(outcome.remaining_roles) if outcome.remaining_roles else ''}"
        )
    finish(0)


@approvals_app.command("approve")
def approvals_approve(approval_id: str, user: AsOpt, as_json: JsonOpt = False) -> None:
    """Approve a pending action (the exact payload now in the inbox)."""
    _decide(approval_id, "approve", user, "", as_json)


@approvals_app.command("reject")
def approvals_reject(
    approval_id: str,
    user: AsOpt,
    reason: Annotated[str, typer.Option("--reason")],
    as_json: JsonOpt = False,
) -> None:
    """Reject a pending action; the reason reaches the agent (no re-proposal meanwhile)."""
    _decide(approval_id, "reject", user, reason, as_json)


@approvals_app.command("alerts")
def approvals_alerts(org: str = "demo", hours: float = 24, as_json: JsonOpt = False) -> None:
    """Send each CSM the early warnings raised on their book in the last HOURS (email and webhook)."""
    from datetime import UTC, datetime, timedelta

    from autopilot.runtime.approvals.notify import send_alert_digest
    from autopilot.runtime.services import build_services

    per_user = send_alert_digest(
        build_services(get_settings()), org_id=org, since=datetime.now(UTC) - timedelta(hours=hours)
    )
    if as_json:
        emit_json({"ok": True, "sent": per_user})
    else:
        console.print(f"early-warning digest sent to {len(per_user)} person(s): {per_user}")
    finish(0)


@approvals_app.command("digest")
def approvals_digest(org: str = "demo", as_json: JsonOpt = False) -> None:
    """Send each approver a digest of what waits for them (email and webhook)."""
    from autopilot.runtime.approvals.notify import send_digest
    from autopilot.runtime.services import build_services

    per_user = send_digest(build_services(get_settings()), org_id=org)
    if as_json:
        emit_json({"ok": True, "sent": per_user})
    else:
        console.print(f"digest sent to {len(per_user)} approver(s): {per_user}")
    finish(0)


@runs_app.command("rollback")
def runs_rollback(
    run_id: Annotated[str, typer.Argument(help="the run's workflow id, agent:<agent>:<account>")],
    user: AsOpt = "adam",
    dry_run: Annotated[bool, typer.Option("--dry-run")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Undo a run's reversible writes, newest first, each through the policy gate and
    audited; irreversible effects are reported."""
    from autopilot.runtime.devstack.stack import recorded_crm
    from autopilot.runtime.execution.rollback import RollbackError, rollback
    from autopilot.runtime.services import build_services

    svc = build_services(
        recorded_crm(get_settings())
    )  # the CRM of a running `autopilot up`, if any
    try:
        result = asyncio.run(rollback(svc, run_id, actor=user, dry_run=dry_run))
    except RollbackError as err:
        fail(str(err), as_json=as_json)
    if as_json:
        emit_json({"ok": True, **result})
        finish(0)
    for s in result["steps"]:
        console.print(
            f"{s['tool']:<22} {s['status']:<17} {s.get('compensate') or ''} {s.get('detail', '')}"
        )
    console.print(
        f"{result['undone']} undone, {result['irreversible']} irreversible"
        f"{' (dry run: nothing changed)' if dry_run else ''}"
    )
    finish(0)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
