"""`autopilot compliance`: export the documents an auditor or a data subject asks for
(runtime/compliance/), and import one account's portability export into a store."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from autopilot.runtime.cli.output import console, emit_json, fail, finish
from autopilot.runtime.config import get_settings

app = typer.Typer(
    no_args_is_help=True,
    help="Compliance exports: EU AI Act, ISO 42001, ADMT, Data Act, model cards.",
)
JsonOpt = Annotated[bool, typer.Option("--json", help="print one JSON object on stdout")]


def _context() -> Any:
    from autopilot.runtime.compliance.evidence import ExportContext, utc_now
    from autopilot.runtime.services import make_policy_engine
    from autopilot.runtime.store.db import make_engine
    from autopilot.tools.builtin import registry

    settings = get_settings()
    return ExportContext(
        db=make_engine(settings.db_url),
        settings=settings,
        policy=make_policy_engine(settings),
        tools=registry,
        now=utc_now(),
    )


@app.command("export")
def export_cmd(
    framework: Annotated[
        list[str],
        typer.Option(
            "--framework",
            help="eu-ai-act | iso42001 | admt | data-act | model-cards | all (repeatable)",
        ),
    ],
    out: Annotated[Path, typer.Option("--out", help="folder the files are written to")],
    contact: Annotated[
        str | None, typer.Option("--contact", help="ADMT: answer this contact's access request")
    ] = None,
    account: Annotated[
        str | None, typer.Option("--account", help="data-act: the account to export")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Write each framework's document as JSON (validated by its schema), Markdown and
    HTML; missing evidence is listed as a gap. Exits 1 if a document fails its schema."""
    from rich.progress import Progress

    from autopilot.runtime.compliance.export import ExportError, export
    from autopilot.runtime.compliance.render import FRAMEWORKS

    chosen = list(FRAMEWORKS) if "all" in framework else framework
    bad = [f for f in chosen if f not in FRAMEWORKS]
    if bad:
        fail(f"--framework: one of {', '.join(FRAMEWORKS)} or all, not {bad[0]!r}", as_json=as_json)
    if "data-act" in chosen and not account:
        if "all" not in framework:
            fail("--account: required for the data-act export", as_json=as_json)
        chosen.remove("data-act")  # `all` without an account: the other four
    ctx = _context()
    results = []
    with Progress(console=console, disable=as_json, transient=True) as progress:
        task = progress.add_task("exporting", total=len(chosen))
        for f in chosen:
            target = out / f if f == "data-act" else out
            try:
                results.append(export(ctx, f, target, contact_id=contact, account_id=account))
            except ExportError as err:
                fail(str(err), as_json=as_json)
            progress.advance(task)
    valid = all(r.valid for r in results)
    if as_json:
        emit_json({"ok": valid, "exports": [r.summary() for r in results]})
        finish(0 if valid else 1)
    for r in results:
        state = "valid" if r.valid else f"INVALID ({len(r.schema_errors)} schema errors)"
        console.print(
            f"{r.framework:<12} {state}; {len(r.gaps)} gap(s); {', '.join(str(p) for p in r.files)}"
        )
        for e in r.schema_errors[:5]:
            console.print(f"  schema: {e}")
        for g in r.gaps:
            console.print(f"  gap {g.code} ({g.section}): {g.detail}")
    finish(0 if valid else 1)


@app.command("import-account")
def import_account_cmd(folder: Path, as_json: JsonOpt = False) -> None:
    """Import one account's data-act export (its account.json) into this store, all or nothing."""
    from autopilot.runtime.compliance.data_act import import_account
    from autopilot.runtime.store.db import make_engine

    try:
        counts = import_account(make_engine(get_settings().db_url), folder)
    except ValueError as err:
        fail(str(err), as_json=as_json)
    if as_json:
        emit_json({"ok": True, "imported": counts})
    else:
        console.print(f"imported {sum(counts.values())} rows: {counts}")
    finish(0)
