"""`autopilot model|accounts|metrics …`: Health 2.0, account views, cost to retain and
the autonomy rate."""

from __future__ import annotations

import tempfile
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Annotated, Literal

import typer
from sqlmodel import Session

from autopilot.runtime.cli.output import console, emit_json, fail, finish
from autopilot.runtime.config import get_settings
from autopilot.runtime.policy.limits import read_limits
from autopilot.runtime.services import make_policy_engine

JsonOpt = Annotated[bool, typer.Option("--json", help="print one JSON object on stdout")]
model_app = typer.Typer(no_args_is_help=True, help="Health 2.0: train, evaluate.")
accounts_app = typer.Typer(
    no_args_is_help=True, help="Accounts: health, explanation, signals, options."
)
metrics_app = typer.Typer(no_args_is_help=True, help="Metrics: cost to retain, autonomy rate.")


def _db():  # type: ignore[no-untyped-def]
    from autopilot.runtime.store.db import make_engine

    return make_engine(get_settings().db_url)


@model_app.command("train")
def train(
    out: Annotated[
        Path | None,
        typer.Option(
            help="folder for model.txt, card.json, MODEL_CARD.md "
            "(default: <data dir>/models/<version>)"
        ),
    ] = None,
    cutoff: Annotated[
        str | None,
        typer.Option(
            help="YYYY-MM-DD: read nothing after this day (default: the last day of history)"
        ),
    ] = None,
    validate_months: Annotated[
        int, typer.Option(help="months before the cutoff used for validation and the threshold")
    ] = 3,
    rule: Annotated[
        str,
        typer.Option(
            help="alert threshold rule: budget:<K>x (alerts ≤ K × churn base rate) or precision:<P>"
        ),
    ] = "budget:2x",
    max_gain_share: Annotated[
        float, typer.Option(help="leakage check: one feature's gain share limit")
    ] = 0.5,
    max_auc_gap: Annotated[
        float, typer.Option(help="leakage check: model AUC above baseline limit")
    ] = 0.15,
    simulate: Annotated[
        int,
        typer.Option(
            help="first write N simulated accounts to a fresh store "
            "and train on that (0: the configured store)"
        ),
    ] = 0,
    org: str = "",
    report_accounts: Annotated[
        int,
        typer.Option(
            help="also put the early warning on N held-out simulated accounts in the card "
            "(labelled as the simulator's; 0: none)"
        ),
    ] = 0,
    as_json: JsonOpt = False,
) -> None:
    """Train Health 2.0 on the store's history, time-honestly: features as of each day,
    nothing after the cutoff, validation on the later months, a logistic baseline beside
    the model, a leakage check, and the alert threshold chosen by RULE on the validation
    period (or none, said plainly)."""
    from rich.progress import Progress

    from autopilot.runtime.devstack.simulator import simulate as sim
    from autopilot.runtime.health.asof import load_history
    from autopilot.runtime.health.honest import train_time_honest
    from autopilot.runtime.health.leakage import LeakageError
    from autopilot.runtime.health.thresholds import parse_rule
    from autopilot.runtime.health.training import write_history
    from autopilot.runtime.store.db import make_engine

    try:
        parsed_rule = parse_rule(rule)
        cut = date.fromisoformat(cutoff) if cutoff else None
    except ValueError as err:
        fail(str(err) if "rule" in str(err) else f"cutoff: {err}", as_json=as_json)
    if simulate:
        db = make_engine(f"sqlite:///{tempfile.mkdtemp(prefix='autopilot-sim-')}/history.db")
        write_history(db, sim(simulate, seed=1), start=date.today() - timedelta(days=300))
    else:
        db = _db()
    with Progress(console=console, disable=as_json, transient=True) as bar:
        task = bar.add_task("reading the history as of each day", total=2)
        try:
            history = load_history(db, org_id=org or None)
            bar.update(task, advance=1, description="training model and baseline")
            model = train_time_honest(
                db,
                cutoff=cut,
                validate_months=validate_months,
                rule=parsed_rule,
                org_id=org or None,
                max_gain_share=max_gain_share,
                max_auc_gap=max_auc_gap,
                history=history,
            )
        except LeakageError as err:
            if as_json:
                emit_json({"ok": False, "error": str(err), "leakage_check": err.result})
                finish(2)
            fail(str(err), as_json=False)
        except ValueError as err:
            fail(str(err), as_json=as_json)
        bar.update(task, advance=1)
    if report_accounts and model.threshold is not None:
        from autopilot.runtime.health.early_warning import report, risk_matrix

        held = sim(report_accounts, seed=3)
        model.card["early_warning"] = {"source": "simulator, not this store"} | report(
            risk_matrix(model, held), held, model.threshold
        )
    folder = out if out is not None else get_settings().data_dir / "models" / model.version
    model.save(folder)
    if as_json:
        emit_json({"ok": True, "folder": str(folder), "card": model.card})
        finish(0)
    card, t = model.card, model.card["threshold"]
    console.print(
        f"trained {model.version} → {folder} (use it: AUTOPILOT_HEALTH_MODEL_DIR={folder})"
    )
    console.print(
        f"cutoff {card['cutoff']}; validation {card['validation']['period']}: AUC model "
        f"{card['validation']['auc']}, plain baseline {card['validation']['baseline_auc']}"
    )
    console.print(
        "top gain shares: " + ", ".join(f"{k} {v:.0%}" for k, v in card["top_gain_shares"].items())
    )
    if t["met"]:
        console.print(
            f"alert threshold {t['threshold']} ({t['rule_text']}): precision {t['precision']}, "
            f"recall {t['recall']}, alert rate {t['alert_rate']} vs base rate {t['base_rate']}"
        )
    else:
        console.print(f"[bold red]{t['note']}[/bold red]")
    finish(0)


@model_app.command("report")
def model_report(
    png: Annotated[
        Path | None, typer.Option(help="lead time vs precision curve (default: beside the model)")
    ] = None,
    simulator: Annotated[
        bool, typer.Option("--simulator", help="also evaluate on held-out simulated accounts")
    ] = False,
    accounts: Annotated[int, typer.Option(help="simulated accounts (with --simulator)")] = 1000,
    seed: int = 3,
    org: str = "",
    as_json: JsonOpt = False,
) -> None:
    """The current model on the store's held-out period (the days after its cutoff):
    lead time, precision, recall, alert rate vs base rate, AUC vs the plain baseline, a
    lead-time-vs-precision PNG; and renewal forecast accuracy (MAPE, calibration)."""
    from autopilot.runtime.health.asof import load_history
    from autopilot.runtime.health.forecasts import forecast_accuracy
    from autopilot.runtime.health.report import held_out
    from autopilot.runtime.health.scoring import current_model

    try:
        model = current_model()
    except (OSError, ValueError) as err:
        fail(f"model: cannot load the configured model: {err}", as_json=as_json)
    db = _db()
    picture = png or get_settings().data_dir / "reports" / f"{model.version}-lead-vs-precision.png"
    result: dict = {"model": model.version}
    try:
        result["store"] = held_out(model, load_history(db, org_id=org or None), png=picture)
    except ValueError as err:  # said in the report, not replaced by other figures
        result["store"] = {"error": str(err)}
    with Session(db) as session:
        result["forecasts"] = forecast_accuracy(
            session, today=datetime.now(UTC).date(), org_id=org or None
        )
    if simulator:
        from autopilot.runtime.devstack.simulator import simulate as sim
        from autopilot.runtime.health.early_warning import report, risk_matrix

        held = sim(accounts, seed=seed)
        t = model.threshold
        result["simulator"] = (
            report(risk_matrix(model, held), held, t)
            if t is not None
            else {"alerts": "none: the model has no threshold"}
        )
    if as_json:
        emit_json({"ok": True, **result})
        finish(0)
    r, f = result["store"], result["forecasts"]
    if "error" in r:
        console.print(f"[bold red]no held-out report on the store: {r['error']}[/bold red]")
    else:
        _print_store_report(r)
    if f["mape"] is None:
        console.print(
            f"renewal forecasts: {f['resolved']} of {f['forecasts']} resolved: {f.get('note', 'no MAPE')}"
        )
    else:
        console.print(
            f"renewal forecasts: {f['resolved']} of {f['forecasts']} resolved; MAPE {f['mape']:.1%} "
            f"(KPI ≤ {f['kpi_mape']:.0%}: {'met' if f['mape_meets_kpi'] else 'NOT met'}); Brier {f['brier']}"
        )
    if "simulator" in result:
        console.print(f"simulator: {result['simulator']}")
    finish(0)


def _print_store_report(r: dict) -> None:
    console.print(
        f"{r['model']} on the store's held-out period {r['period']} (after cutoff {r['cutoff']}): "
        f"{r['accounts']} accounts, {r['churned']} churned"
    )
    console.print(
        f"AUC model {r['auc']}, plain baseline {r.get('baseline_auc')}; base rate {r['base_rate']}"
    )
    if r["threshold"] is None:
        console.print(f"[bold red]alerts: {r['alerts']}[/bold red]")
    else:
        console.print(
            f"threshold {r['threshold']}: median lead {r['median_lead_days']} days, precision "
            f"{r['precision']}, recall {r['recall']}, ≥14 days ahead {r['share_alerted_14d_before']}, "
            f"alert rate {r.get('alert_rate')} vs base rate {r['base_rate']}"
        )
    console.print(f"curve: {r['png']}")


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
