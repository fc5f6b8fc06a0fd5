"""`autopilot simulate`: the agents' real decision path in dry run over the portfolio and
the simulator's next days, beside no action and a rule playbook. Nothing is sent and
the store is not written (the simulation works on a copy, in memory)."""

from __future__ import annotations

import asyncio
import sys
from datetime import date
from typing import Annotated, Any

import typer

from autopilot.runtime.cli.output import console, emit_json, err_console, fail, finish
from autopilot.runtime.config import get_settings

SEGMENTS = ("enterprise", "mid_market", "smb", "tech_touch")
ROWS = (  # label, key, format
    ("runs / rules fired", "runs", "{:,}"),
    ("actions proposed", "actions_proposed", "{:,}"),
    ("  auto-executed", "auto_executed", "{:,}"),
    ("  after approval", "approval", "{:,}"),
    ("  denied by policy", "denied", "{:,}"),
    ("spend", "spend", "{:,.0f}"),
    ("budget (horizon)", "budget", "{:,.0f}"),
    ("spend % of budget", "spend_pct_of_budget", "{:.2f} %"),
    ("expected uplift (ARR)", "expected_uplift_arr", "{:,.0f}"),
    ("expected retained ARR", "retained_arr", "{:,.0f}"),
    ("CbR (spend / retained)", "cbr", "{:.6f}"),
)


def simulate_cmd(
    agent: Annotated[
        str, typer.Option("--agent", help="an agent's name, or `all`", show_default=True)
    ] = "all",
    segment: Annotated[
        str | None, typer.Option("--segment", help="only this segment's accounts")
    ] = None,
    days: Annotated[int, typer.Option("--days", min=1, max=365, help="days simulated")] = 90,
    accounts: Annotated[
        int, typer.Option("--accounts", min=1, help="accounts of the seeded demo portfolio")
    ] = 240,
    seed: Annotated[int, typer.Option("--seed", help="portfolio and simulator seed")] = 7,
    start: Annotated[
        str | None,
        typer.Option("--start", help="the portfolio's as-of date, YYYY-MM-DD (default: today)"),
    ] = None,
    from_store: Annotated[
        bool,
        typer.Option(
            "--from-store",
            help="simulate a copy of the configured SQLite store instead of the demo seed",
        ),
    ] = False,
    as_json: Annotated[
        bool, typer.Option("--json", help="print one JSON object on stdout")
    ] = False,
) -> None:
    """Simulate the agents over the portfolio for the next DAYS days (dry run, nothing sent,
    nothing stored): actions proposed, auto-executed, approved and denied, spend against
    budget, expected uplift, retained ARR and CbR, beside no action and a rule playbook."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

    from autopilot.runtime.agents.simulate import SimulationError, simulate

    if segment is not None and segment not in SEGMENTS:
        fail(f"unknown segment '{segment}' (one of {', '.join(SEGMENTS)})", as_json=as_json)
    try:
        as_of = date.fromisoformat(start) if start else None
    except ValueError:
        fail(f"--start: '{start}' is not a date (YYYY-MM-DD)", as_json=as_json)
    progress = Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err_console,
        transient=True,
        disable=not sys.stderr.isatty(),
    )
    task = progress.add_task("simulating days", total=days)

    async def main() -> dict[str, Any]:
        return await simulate(
            get_settings(),
            agents=None if agent == "all" else [agent],
            segment=segment,
            days=days,
            accounts=accounts,
            seed=seed,
            start=as_of,
            from_store=from_store,
            on_day=lambda done: progress.update(task, completed=done),
        )

    try:
        with progress:
            report = asyncio.run(main())
    except SimulationError as err:
        fail(str(err), as_json=as_json)
    except Exception as err:  # noqa: BLE001 - top level: report and exit non-zero
        fail(f"simulation failed: {type(err).__name__}: {err}", as_json=as_json, code=1)
    if as_json:
        emit_json(report)
        finish(0)
    _print(report)
    finish(0)


def _cell(value: Any, fmt: str) -> str:
    return "-" if value is None else fmt.format(value)


def _money(value: float) -> str:
    return f"{value / 1000:,.0f}k" if abs(value) >= 10_000 else f"{value:,.0f}"


def _print(report: dict[str, Any]) -> None:
    from rich import box
    from rich.table import Table

    p, s = report["portfolio"], report["strategies"]
    console.print(
        f"[bold]{p['accounts']} accounts[/bold] ({p['source']}"
        f"{', segment ' + p['segment'] if p['segment'] else ''}), ARR {p['arr']:,.0f}; "
        f"{p['days']} days from {p['start']}: {p['events']:,} events, "
        f"{p['simulated_churns']} simulated churns, {p['renewing_in_horizon']} renewals due; "
        f"agents: {', '.join(report['agents'])}"
    )
    table = Table(title="dry run: nothing sent, nothing stored")
    table.add_column("")
    for name in s:
        table.add_column(name.replace("_", " "), justify="right")
    for label, key, fmt in ROWS:
        table.add_row(label, *(_cell(s[name].get(key), fmt) for name in s))
    console.print(table)
    for strategy, by in (("agents", "by_agent"), ("rule_playbook", "by_rule")):
        rows = s[strategy].get(by, {})
        if not rows:
            continue
        detail = Table(
            title=f"{strategy.replace('_', ' ')} {by.replace('_', ' ')}",
            box=box.SIMPLE_HEAD,
            padding=0,
            collapse_padding=True,
            pad_edge=False,
            show_edge=False,
        )
        detail.add_column("", no_wrap=True)
        for key in ("runs", "prop.", "auto", "appr.", "denied", "spend", "uplift", "retained"):
            detail.add_column(key, justify="right", no_wrap=True, min_width=len(key))
        detail.add_column("CbR", justify="right", no_wrap=True)
        codes = []
        for name, f in rows.items():
            detail.add_row(
                name,
                f"{f['runs']:,}",
                f"{f['actions_proposed']:,}",
                f"{f['auto_executed']:,}",
                f"{f['approval']:,}",
                f"{f['denied']:,}",
                _money(f["spend"]),
                _money(f["expected_uplift_arr"]),
                _money(f["retained_arr"]),
                _cell(f["cbr"], "{:.5f}"),
            )
            if f["deny_codes"]:
                codes.append(
                    f"  {name}: " + ", ".join(f"{c} {n}" for c, n in f["deny_codes"].items())
                )
        console.print(detail)
        if codes:
            console.print("denied by:\n" + "\n".join(codes))
    console.print(f"retained ARR: {report['assumptions']['retained_arr']}")
    console.print("retained (by agent or rule): the ARR retained of the accounts it spent on")
    console.print(f"took {report['elapsed_s']} s")
