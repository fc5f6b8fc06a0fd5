"""`autopilot privacy …`: erase a contact, apply retention.

Both change the audit chain only by tombstoning payloads it then vouches for, so
`autopilot audit verify` stays green after either."""

from __future__ import annotations

from typing import Annotated

import typer

from autopilot.runtime.cli.output import console, emit_json, err_console, fail, finish
from autopilot.runtime.config import get_settings

app = typer.Typer(no_args_is_help=True, help="Privacy: erase a contact, apply retention.")
JsonOpt = Annotated[bool, typer.Option("--json", help="print one JSON object on stdout")]


@app.command()
def erase(
    contact_id: Annotated[str, typer.Argument(help="the contact's id")],
    reason: Annotated[str, typer.Option("--reason", help="why (no personal data)")] = "",
    actor: Annotated[str, typer.Option("--as", help="who erases")] = "privacy-officer",
    as_json: JsonOpt = False,
) -> None:
    """Erase a contact's name and email from every table in one transaction; their audit
    entries keep their hashes and get tombstones, vouched for by an `erase` entry."""
    from autopilot.runtime.privacy.erase import ErasureError, erase_contact
    from autopilot.runtime.store.db import make_engine

    if not contact_id.strip():
        fail("contact_id: must not be empty", as_json=as_json)
    try:
        result = erase_contact(
            make_engine(get_settings().db_url), contact_id, actor=actor, reason=reason
        )
    except ErasureError as err:
        fail(str(err), as_json=as_json)
    if as_json:
        emit_json({"ok": True, **result.as_json()})
        finish(0)
    changed = ", ".join(f"{t}: {n}" for t, n in sorted(result.counts.items()))
    console.print(
        f"erased contact {contact_id} (erasure {result.erasure_id}); rows changed: {changed}"
    )
    finish(0)


@app.command()
def retention(
    apply: Annotated[bool, typer.Option("--apply", help="delete; without it, only count")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Show (or, with --apply, delete) the rows older than the retention settings
    (AUTOPILOT_RETENTION_DAYS_*); audit payloads past retention are tombstoned, never deleted."""
    from rich.progress import Progress, TaskID

    from autopilot.runtime.privacy.retention import RetentionError, run
    from autopilot.runtime.store.db import make_engine

    settings = get_settings()
    db = make_engine(settings.db_url)
    with Progress(console=err_console, disable=as_json, transient=True) as bar:
        tasks: dict[str, TaskID] = {}

        def progress(table: str, done: int, total: int) -> None:
            if table not in tasks:
                tasks[table] = bar.add_task(table, total=total)
            bar.update(tasks[table], completed=done)

        try:
            report = run(db, settings, apply=apply, progress=progress)
        except RetentionError as err:
            fail(str(err), as_json=as_json)
    if as_json:
        emit_json(report.as_json())
        finish(0)
    verb = "deleted" if apply else "due (dry run; --apply deletes)"
    for table, n in report.tables.items():
        console.print(f"{table:<22} {n:>7} {verb}  older than {report.cutoffs[table]}")
    if "auditentry" in report.cutoffs:
        console.print(
            f"{'auditentry':<22} {report.audit_payloads:>7} payload(s) "
            f"{'tombstoned' if apply else 'to tombstone'}  older than {report.cutoffs['auditentry']}"
        )
    if not report.cutoffs:
        console.print("no retention configured (AUTOPILOT_RETENTION_DAYS_*): nothing is due")
    finish(0)
