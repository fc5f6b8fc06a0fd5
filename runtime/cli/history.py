"""`autopilot history …`: backfill a customer's usage history and subscriptions into the
daily rollups in one command, without Temporal and without starting a run (see
`accounts.history`), and set the organisation's own segments and modules."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn
from sqlmodel import Session

from autopilot.runtime.cli.output import console, emit_json, fail, finish

JsonOpt = Annotated[bool, typer.Option("--json", help="print one JSON object on stdout")]
app = typer.Typer(
    no_args_is_help=True, help="History: backfill usage and subscriptions; segments, modules."
)


def _db():  # type: ignore[no-untyped-def]
    from autopilot.runtime.config import get_settings
    from autopilot.runtime.store.db import make_engine

    return make_engine(get_settings().db_url)


def _subscriptions_beside(path: Path) -> Path | None:
    found = sorted(path.glob("subscriptions*.csv")) if path.is_dir() else []
    return found[0] if found else None


@app.command("import")
def history_import(
    path: Annotated[Path, typer.Argument(help="a CSV/JSONL/Parquet file, or a folder of them")],
    mapping: Annotated[
        Path | None, typer.Option(help="YAML: source event names onto signals and modules")
    ] = None,
    subscriptions: Annotated[
        Path | None,
        typer.Option(help="subscriptions CSV (a folder's subscriptions*.csv is found by itself)"),
    ] = None,
    org: str = "demo",
    batch_rows: Annotated[int, typer.Option(min=1, help="source rows per transaction")] = 50_000,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="fold a sample in memory, write nothing")
    ] = False,
    sample: Annotated[int, typer.Option(min=1, help="rows a dry run reads")] = 2_000,
    as_json: JsonOpt = False,
) -> None:
    """Import usage history into the daily rollups (idempotent: a re-run adds nothing),
    and subscriptions into ARR, seats, renewal and start dates. Never starts a run."""
    from autopilot.runtime.accounts.history import HistoryError, import_history
    from autopilot.runtime.accounts.history_mapping import (
        MappingError,
        identity,
        load_mapping,
        vocabulary,
    )
    from autopilot.runtime.accounts.subscriptions import (
        SubscriptionError,
        import_subscriptions,
    )
    from autopilot.runtime.store.db import transaction

    if not path.exists():
        fail(f"path: no such file or folder: {path}", as_json=as_json)
    engine = _db()
    with Session(engine) as session:
        modules = vocabulary(session, org).modules
    started = datetime.now(UTC)
    out: dict[str, Any] = {"ok": True, "dry_run": dry_run}
    try:
        rules = load_mapping(mapping, modules=modules) if mapping else identity()
        subs = subscriptions or _subscriptions_beside(path)
        if subs is not None and not dry_run:
            with transaction(engine, writes=True) as session:
                done = import_subscriptions(session, subs, org_id=org, today=started.date())
            out["subscriptions"] = {"rows": done.subscriptions, "accounts": done.accounts}
        columns = [
            TextColumn("{task.description}"),
            BarColumn(),
            DownloadColumn(),
            TimeRemainingColumn(),
        ]
        with Progress(*columns, console=console, disable=as_json, transient=True) as bar:
            tasks: dict[str, Any] = {}

            def moved(name: str, at: int, size: int) -> None:
                if name not in tasks:
                    tasks[name] = bar.add_task(name, total=size)
                bar.update(tasks[name], completed=at)

            report = import_history(
                engine,
                path,
                rules,
                org_id=org,
                modules=modules,
                batch_rows=batch_rows,
                dry_run=dry_run,
                sample_rows=sample,
                progress=moved,
            )
    except (HistoryError, MappingError, SubscriptionError) as err:
        fail(str(err), as_json=as_json)
    seconds = (datetime.now(UTC) - started).total_seconds()
    out |= {
        "files": report.files,
        "rows": report.rows,
        "events": report.events,
        "account_days": report.account_days,
        "batches": report.batches,
        "skipped_batches": report.skipped_batches,
        "signals": dict(report.signals.most_common()),
        "ignored": report.ignored,
        "unmapped": dict(report.unmapped.most_common(20)),
        "unknown_accounts": sum(report.unknown_accounts.values()),
        "unknown_account_ids": [a for a, _ in report.unknown_accounts.most_common(5)],
        "seconds": round(seconds, 2),
        "events_per_second": round(report.events / seconds) if seconds else None,
    }
    if dry_run:
        out["sample"] = report.sample
    if as_json:
        emit_json(out)
        finish()
    verb = "would fold" if dry_run else "imported"
    console.print(
        f"{verb} {report.events:,} events from {report.rows:,} rows into "
        f"{report.account_days:,} account-days in {seconds:.1f} s"
        + (
            f" ({report.skipped_batches} batches already imported)"
            if report.skipped_batches
            else ""
        )
    )
    if "subscriptions" in out:
        s = out["subscriptions"]
        console.print(f"subscriptions: {s['rows']:,} rows for {s['accounts']:,} accounts")
    for name, n in report.signals.most_common():
        console.print(f"  {name}: {n:,}")
    if report.unmapped:
        console.print(f"[yellow]unmapped[/yellow] (not folded): {dict(report.unmapped)}")
    if report.unknown_accounts:
        console.print(
            f"[yellow]unknown accounts[/yellow] (skipped): {len(report.unknown_accounts):,}, "
            f"e.g. {', '.join(a for a, _ in report.unknown_accounts.most_common(5))}"
        )
    for row in report.sample:
        console.print(f"  {row}")
    finish()


@app.command("vocabulary")
def history_vocabulary(
    org: str = "demo",
    segments: Annotated[str | None, typer.Option(help="comma-separated segment names")] = None,
    modules: Annotated[str | None, typer.Option(help="comma-separated module names")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Show (or set) the organisation's segments and modules."""
    from autopilot.runtime.accounts.history_mapping import set_vocabulary
    from autopilot.runtime.store.db import transaction

    def names(text: str | None) -> list[str] | None:
        return None if text is None else [n.strip() for n in text.split(",")]

    try:
        with transaction(_db(), writes=True) as session:
            vocab = set_vocabulary(session, org, segments=names(segments), modules=names(modules))
    except ValueError as err:
        fail(str(err), as_json=as_json)
    if as_json:
        emit_json({"ok": True, "segments": vocab.segments, "modules": vocab.modules})
        finish()
    console.print(f"segments: {', '.join(vocab.segments)}")
    console.print(f"modules: {', '.join(vocab.modules)}")
    finish()
