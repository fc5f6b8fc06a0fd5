"""`autopilot accounts|metrics …`: account views, cost to retain and the autonomy rate
(Health 2.0's `model` commands are in model.py)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Literal

import typer
from sqlmodel import Session

from autopilot.runtime.cli.output import console, emit_json, fail, finish
from autopilot.runtime.config import get_settings
from autopilot.runtime.policy.limits import read_limits
from autopilot.runtime.services import make_policy_engine

JsonOpt = Annotated[bool, typer.Option("--json", help="print one JSON object on stdout")]
accounts_app = typer.Typer(
    no_args_is_help=True, help="Accounts: health, explanation, signals, options."
)
metrics_app = typer.Typer(no_args_is_help=True, help="Metrics: cost to retain, autonomy rate.")


def _db():  # type: ignore[no-untyped-def]
    from autopilot.runtime.store.db import make_engine

    return make_engine(get_settings().db_url)


@accounts_app.command("show")
def show(account_id: str, as_json: JsonOpt = False) -> None:
    """Health 2.0 with each factor's signed contribution (they add up to the score),
    signals, the latest alert and the optimizer's cheapest plan."""
    from autopilot.runtime.accounts.views import account_view
    from autopilot.runtime.store.accounts import Account

    db = _db()
    now = datetime.now(UTC)
    with Session(db) as session:
        account = session.get(Account, account_id)
        if account is None:
            fail(f"no account {account_id}", as_json=as_json)
        view = account_view(
            session,
            account,
            read_limits(make_policy_engine(get_settings())),
            today=now.date(),
            now=now,
        )
    if as_json:
        emit_json({"ok": True, **view})
        finish(0)
    a, h = view["account"], view["health"]
    console.print(
        f"[bold]{a['name']}[/bold] ({a['id']}, {a['segment']}, ARR {a['arr']:,.0f}, renews {a['renewal_date']})"
    )
    console.print(
        f"Health {h['health']:.2f} · churn risk {h['risk']:.1%} (model {h['model_version']})"
    )
    console.print(f"  {'baseline':<44} {h['baseline']:+8.2f}")
    for f in h["factors"]:
        console.print(
            f"  {f['label'] + ' = ' + format(f['value'], 'g'):<44} {f['contribution']:+8.2f}"
        )
    console.print(f"  {'= health':<44} {view['check']['baseline_plus_contributions']:8.2f}")
    for s in view["signals"]:
        console.print(f"signal: {s['type']} · {s['detail']}")
    plan = view["optimizer"]["best"]
    console.print(
        f"cheapest plan to keep renewal ≥ 80 %: {', '.join(o['name'] for o in plan['actions']) or 'none needed'}"
        f" · cost {plan['total_cost']:,.2f} · renewal probability {plan['expected']:.0%}"
        f"{'' if plan['feasible'] else ' (goal out of reach within the limits)'}"
    )
    finish(0)


@metrics_app.command("cbr")
def cbr_cmd(
    by: Literal["segment", "agent", "playbook", "account"] = "segment",
    days: int | None = None,
    org: str = "demo",
    as_json: JsonOpt = False,
) -> None:
    """Cost to retain = cost / retained ARR this quarter so far (or the last DAYS days), by slice."""
    from autopilot.runtime.ledger.cbr import cbr, period

    since, until = period(datetime.now(UTC), days)
    with Session(_db()) as session:
        rows = cbr(session, org_id=org, by=by, since=since, until=until)
    if as_json:
        emit_json(
            {
                "ok": True,
                "by": by,
                "since": since.isoformat(),
                "until": until.isoformat(),
                "rows": rows,
            }
        )
        finish(0)
    console.print(f"cost to retain by {by}, {f'last {days} days' if days else 'this quarter'}")
    console.print(f"{by:<16} {'cost':>12} {'retained ARR':>15} {'CbR':>8}  accounts")
    for r in rows:
        console.print(
            f"{r[by]:<16} {r['total_cost']:>12,.2f} {r['retained_arr']:>15,.0f} "
            f"{'-' if r['cbr'] is None else format(r['cbr'], '.2%'):>8}  {r['retained_accounts']}/{r['accounts']}"
        )
    finish(0)


@metrics_app.command("autonomy")
def autonomy_cmd(days: int | None = None, org: str = "demo", as_json: JsonOpt = False) -> None:
    """Autonomy rate this quarter so far (or the last DAYS days): the share of decided
    actions executed without a person and not rolled back, per agent and segment."""
    from rich import box
    from rich.table import Table

    from autopilot.runtime.approvals.metrics import OUTCOMES, autonomy
    from autopilot.runtime.ledger.cbr import period

    since, until = period(datetime.now(UTC), days)
    with Session(_db()) as session:
        result = autonomy(session, org_id=org, since=since, until=until)
    if as_json:
        emit_json({"ok": True, **result})
        finish(0)
    table = Table(
        title=f"autonomy rate, {org}, {f'last {days} days' if days else 'this quarter'}",
        caption="auto: executed without a person and not rolled back; undone: rolled back; "
        "other: any other final status; in flight: allowed or pending, outside the rate",
        box=box.SIMPLE_HEAD,
    )
    table.add_column("agent", no_wrap=True)
    table.add_column("segment", no_wrap=True)
    short = {"autonomous": "auto", "with_person": "person", "rolled_back": "undone"}
    for name in ["rate", "decided", *(short.get(k, k) for k in OUTCOMES), "in flight"]:
        table.add_column(name, justify="right", min_width=len(name))

    def add(agent: str, segment: str, r: dict) -> None:
        rate = "-" if r["rate"] is None else format(r["rate"], ".0%")
        counts = [str(r[k]) for k in ("decided", *OUTCOMES, "in_flight")]
        table.add_row(agent, segment, rate, *counts)

    add("all", "all", result["overall"])
    table.add_section()
    for r in result["by_agent"]:
        add(r["agent"], "all", r)
    table.add_section()
    for r in result["by_segment"]:
        add("all", r["segment"], r)
    table.add_section()
    for r in result["by_agent_segment"]:
        add(r["agent"], r["segment"], r)
    console.print(table)
    finish(0)


@accounts_app.command("import")
def import_cmd(
    file: Path,
    kind: Literal["accounts", "contacts"] = "accounts",
    org: str = "demo",
    as_json: JsonOpt = False,
) -> None:
    """Import accounts or contacts from CSV (`custom.<field>` columns) or JSON: all rows
    or none; each bad row is reported with its number and field."""
    from autopilot.runtime.accounts.imports import ImportFailed, import_file

    try:
        n = import_file(_db(), file, kind=kind, org_id=org)
    except ImportFailed as err:
        if as_json:
            emit_json({"ok": False, "error": str(err), "errors": err.errors})
            finish(2)
        fail(f"{file}: nothing imported: {err}", as_json=False)
    except (OSError, ValueError) as err:
        fail(f"{file}: {err}", as_json=as_json)
    if as_json:
        emit_json({"ok": True, "imported": n, "kind": kind})
    else:
        console.print(f"imported {n} {kind}")
    finish(0)


@accounts_app.command("schema")
def schema_cmd(file: Path, org: str = "demo", as_json: JsonOpt = False) -> None:
    """Set the organisation's JSON schema for accounts' custom fields."""
    import json as _json

    import jsonschema

    from autopilot.runtime.accounts.imports import set_custom_schema

    try:
        set_custom_schema(_db(), org, _json.loads(file.read_text()))
    except (OSError, ValueError, jsonschema.SchemaError) as err:
        fail(f"{file}: {err}", as_json=as_json)
    if as_json:
        emit_json({"ok": True, "org": org})
    else:
        console.print(f"custom-field schema set for {org}")
    finish(0)
