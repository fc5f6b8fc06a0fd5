"""`autopilot audit …`: verify the trail, sign its head, export and replay a run."""

from __future__ import annotations

import asyncio
from dataclasses import asdict
from pathlib import Path
from typing import Annotated, Any

import typer

from autopilot.runtime.cli.output import console, emit_json, err_console, fail, finish
from autopilot.runtime.config import get_settings

app = typer.Typer(no_args_is_help=True, help="Audit trail: verify, checkpoint, export, replay.")
JsonOpt = Annotated[bool, typer.Option("--json", help="print one JSON object on stdout")]


OrgOpt = Annotated[
    str | None, typer.Option("--org", help="only this organisation's chain (default: every chain)")
]


@app.command()
def verify(org: OrgOpt = None, as_json: JsonOpt = False) -> None:
    """Check every link of each organisation's chain (and of the legacy chain written
    before chains were per organisation) and every signed checkpoint; name the chain and
    the first entry edited, deleted, reordered or missing, and each checkpoint that
    fails. Exit 1 if any chain is broken."""
    from sqlmodel import Session

    from autopilot.runtime.audit.keys import AuditKeyError, trusted_keys
    from autopilot.runtime.audit.verify import verify as run_verify
    from autopilot.runtime.store.audit import chain_name
    from autopilot.runtime.store.db import make_engine

    settings = get_settings()
    if org is not None and not org.strip():
        fail("--org: must not be empty", as_json=as_json)
    try:
        trusted = trusted_keys(settings.audit_key_path, settings.audit_trusted_keys)
    except (AuditKeyError, OSError) as err:
        fail(str(err), as_json=as_json)
    with Session(make_engine(settings.db_url)) as session:
        report = run_verify(session, trusted, org_id=org)
    if as_json:
        emit_json(report.as_json())
        finish(0 if report.intact else 1)
    if not report.chains:
        console.print("no audit entries yet")
    for chain in report.chains:
        for f in chain.findings:
            console.print(f"[red]{f.code}[/red] {f.message}")
        state = "[green]intact[/green]" if chain.intact else "[red]BROKEN[/red]"
        console.print(
            f"{chain_name(chain.org_id)}: {state}: {chain.verified}/{chain.entries} entries "
            f"verify in order; {chain.checkpoints} checkpoint(s), signed up to entry "
            f"{chain.signed_seq or '-'}"
            + (f"; {chain.unsigned} entries after it not yet signed" if chain.unsigned else "")
        )
    finish(0 if report.intact else 1)


@app.command()
def checkpoint(
    every: Annotated[int, typer.Option(help="only if this many entries are unsigned")] = 1,
    org: OrgOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Sign each chain's head (AUTOPILOT_AUDIT_KEY_FILE; generated into the data dir when
    unset). Run it on a schedule: entries after the newest checkpoint can be cut unseen."""
    from autopilot.runtime.audit.checkpoints import checkpoint as write_checkpoint
    from autopilot.runtime.audit.keys import AuditKeyError, load_or_create
    from autopilot.runtime.store.audit import chain_name
    from autopilot.runtime.store.db import make_engine

    settings = get_settings()
    if every < 1:
        fail("--every: must be at least 1", as_json=as_json)
    try:
        key = load_or_create(settings.audit_key_path)
    except (AuditKeyError, OSError) as err:
        fail(str(err), as_json=as_json)
    rows = write_checkpoint(make_engine(settings.db_url), key, every=every, org_id=org)
    if as_json:
        emit_json(
            {
                "ok": True,
                "key_id": key.key_id,
                "checkpoints": [row.model_dump(mode="json") for row in rows],
            }
        )
        finish(0)
    if not rows:
        console.print("nothing to sign: no entries since the last checkpoints")
    for row in rows:
        console.print(
            f"{chain_name(row.org_id)}: checkpoint {row.id}: entry {row.seq} "
            f"({row.entries} entries), key {key.key_id}"
        )
    finish(0)


def _history(workflow_id: str, history_file: Path | None) -> Any:
    from autopilot.runtime.audit.replay import fetch_history, read_history
    from autopilot.runtime.devstack.temporal import connect

    if history_file is not None:
        return read_history(history_file, workflow_id)
    settings = get_settings()

    async def fetch() -> Any:
        try:
            client = await connect(settings.temporal_target, settings.temporal_namespace)
        except RuntimeError as err:
            raise ConnectionError(
                f"Temporal is not reachable at {settings.temporal_target}: "
                "run `autopilot up`, set TEMPORAL_ADDRESS, or pass --history FILE"
            ) from err
        return await fetch_history(client, workflow_id)

    return asyncio.run(fetch())


@app.command("export-history")
def export_history(
    workflow_id: str,
    out: Annotated[Path, typer.Option("--out", help="the JSON file to write")],
    as_json: JsonOpt = False,
) -> None:
    """Write a run's Temporal history as JSON, for offline audit and `replay --history`."""
    from temporalio.service import RPCError

    try:
        history = _history(workflow_id, None)
    except (ConnectionError, RPCError) as err:
        fail(f"{workflow_id}: {err}", as_json=as_json)
    out.write_text(history.to_json())
    if as_json:
        emit_json(
            {"ok": True, "workflow_id": workflow_id, "events": len(history.events), "out": str(out)}
        )
    else:
        console.print(f"{workflow_id}: {len(history.events)} events written to {out}")
    finish(0)


@app.command()
def replay(
    workflow_id: str,
    history_file: Annotated[
        Path | None, typer.Option("--history", help="an exported history (default: fetch it)")
    ] = None,
    html: Annotated[
        Path | None,
        typer.Option("--html", help="also write the report as a self-contained HTML page here"),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Replay a run on today's code, show its decisions, and re-evaluate each gate input
    against the bundle its run pinned (must reproduce) and today's; exit 1 if replay
    fails, a decision is not reproduced, a pinned bundle is missing, or one would differ."""
    from sqlmodel import Session
    from temporalio.service import RPCError

    from autopilot.runtime.audit import report_html
    from autopilot.runtime.audit.replay import replay_run
    from autopilot.runtime.policy.engine import PolicyLoadError
    from autopilot.runtime.services import make_policy_engine
    from autopilot.runtime.store.db import make_engine
    from autopilot.runtime.store.policy_bundles import keep_bundles

    settings = get_settings()
    try:
        history = _history(workflow_id, history_file)
    except (ConnectionError, RPCError, OSError, ValueError) as err:
        fail(f"{workflow_id}: {err}", as_json=as_json)
    db = make_engine(settings.db_url)
    try:
        today = make_policy_engine(settings)
    except (PolicyLoadError, ValueError) as err:
        fail(f"policies: {err}", as_json=as_json)
    keep_bundles(db, today)  # today's bundle is a bundle runs may pin from now on
    # The spinner goes to stderr, so --json's stdout stays one JSON object.
    with (
        err_console.status("replaying the history and re-evaluating its decisions…"),
        Session(db) as session,
    ):
        report = asyncio.run(replay_run(history, session, today))
    out = report.as_json()
    if html is not None:
        try:
            out["html"] = str(report_html.write(report, html))
        except OSError as err:
            fail(f"--html {html}: {err}", as_json=as_json)
    if as_json:
        emit_json(out)
        finish(0 if report.ok else 1)
    det = (
        "[green]deterministic[/green]"
        if report.replay_failure is None
        else (f"[red]replay fails[/red]: {report.replay_failure}")
    )
    console.print(f"[bold]{report.workflow_id}[/bold]: {report.events} history events, {det}")
    for e in report.context.events if report.context else []:
        console.print(f"  event {e.id} {e.type} at {e.occurred_at[:19]}")
    for s in report.steps:
        console.print(
            f"  #{s.seq:<5} {s.at[:19]} {s.run_key:<40} {s.step:<8} {s.actor:<22} {s.summary}",
            markup=False,
        )
    for r in report.regates:
        then = f"{r.outcome_then} {r.codes_then} {r.roles_then}"
        now = f"{r.outcome_now} {r.codes_now} {r.roles_now} (bundle {r.bundle_now[:12]})"
        if r.gap:
            pinned = f"[red]GAP[/red] {r.gap}"
        elif r.reproduces is False:
            pinned = f"[red]NOT REPRODUCED[/red] by {r.bundle_then[:12]}: {r.mismatch}"
        elif r.reproduces:
            pinned = f"reproduced by {r.bundle_then[:12]}"
        else:
            pinned = r.note or ""
        mark = "[red]WOULD DIFFER[/red]" if r.differs else "same today"
        console.print(f"  gate {r.decision_id} {r.run_key}: {then} → {now}; {pinned}; {mark}")
    if report.context and report.context.costs:
        console.print(
            f"  costs: expected {report.context.total_expected:,.2f}, "
            f"booked {report.context.total_booked:,.2f}"
        )
    if html is not None:
        console.print(f"HTML report written to {out['html']}")
    finish(0 if report.ok else 1)


@app.command()
def whatif(
    workflow_id: str,
    bundle: Annotated[Path, typer.Option("--bundle", help="the candidate policies folder")],
    as_json: JsonOpt = False,
) -> None:
    """One run's gate inputs against a candidate bundle: per step, the outcome, codes and
    roles as logged and as the candidate would decide; which steps would change."""
    from sqlmodel import Session

    from autopilot.runtime.policy.decisions import whatif_run
    from autopilot.runtime.policy.engine import PolicyLoadError
    from autopilot.runtime.policy.rego import RegoEngine
    from autopilot.runtime.store.db import make_engine

    if not bundle.is_dir():
        fail(f"--bundle: {bundle} is not a folder", as_json=as_json)
    try:
        candidate = RegoEngine(bundle, pool_size=1)
    except (PolicyLoadError, ValueError, OSError) as err:
        fail(f"--bundle: {err}", as_json=as_json)
    with Session(make_engine(get_settings().db_url)) as session:
        changes = whatif_run(session, candidate, workflow_id)
    if not changes:
        fail(f"{workflow_id}: no logged decisions for this workflow", as_json=as_json)
    changed = [c for c in changes if c.changed]
    if as_json:
        emit_json(
            {
                "ok": True,
                "workflow_id": workflow_id,
                "bundle_hash": candidate.bundle_hash,
                "evaluated": len(changes),
                "changed": len(changed),
                "steps": [{**asdict(c), "changed": c.changed} for c in changes],
            }
        )
        finish(0)
    console.print(
        f"[bold]{workflow_id}[/bold] against bundle {candidate.bundle_hash[:12]}: "
        f"{len(changed)} of {len(changes)} decision(s) would change"
    )
    for c in changes:
        mark = "[red]CHANGES[/red]" if c.changed else "same"
        console.print(
            f"  {c.id} {c.run_key}: {c.outcome_before} {c.codes_before} {c.roles_before} → "
            f"{c.outcome_after} {c.codes_after} {c.roles_after} {mark}"
        )
    finish(0)
