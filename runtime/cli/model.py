"""`autopilot model …`: Health 2.0 trained time-honestly (on the store, or on a mix of
the simulator's worlds), reported on the store's held-out period, and judged on each
of the simulator's worlds."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from sqlmodel import Session

from autopilot.runtime.cli.model_print import print_report, print_trained, print_worlds
from autopilot.runtime.cli.output import console, emit_json, fail, finish
from autopilot.runtime.config import get_settings

if TYPE_CHECKING:
    from autopilot.runtime.health.model import HealthModel
    from autopilot.runtime.health.thresholds import Rule

JsonOpt = Annotated[bool, typer.Option("--json", help="print one JSON object on stdout")]
model_app = typer.Typer(no_args_is_help=True, help="Health 2.0: train, evaluate.")


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
    worlds: Annotated[
        int,
        typer.Option(
            help="train on a mix of the simulator's worlds, N accounts each, and report every "
            "world on the card: the shipped default's recipe (0: the store)"
        ),
    ] = 0,
    as_json: JsonOpt = False,
) -> None:
    """Train Health 2.0 on the store's history, time-honestly: features as of each day,
    nothing after the cutoff, validation on the later months, a logistic baseline beside
    the model, a leakage check, and the alert threshold chosen by RULE on the validation
    period (or none, said plainly)."""
    from autopilot.runtime.health.thresholds import parse_rule

    try:
        parsed_rule = parse_rule(rule)
        cut = date.fromisoformat(cutoff) if cutoff else None
    except ValueError as err:
        fail(str(err) if "rule" in str(err) else f"cutoff: {err}", as_json=as_json)
    if worlds:
        model = _train_on_worlds(
            worlds, parsed_rule, validate_months, max_gain_share, report_accounts or 1000, as_json
        )
    else:
        model = _train_on_store(
            cut, parsed_rule, validate_months, max_gain_share, max_auc_gap, simulate, org, as_json
        )
        if report_accounts and model.threshold is not None:
            from autopilot.runtime.devstack.simulator import simulate as sim
            from autopilot.runtime.health.early_warning import report, risk_matrix

            held = sim(report_accounts, seed=3)
            model.card["early_warning"] = {"source": "simulator, not this store"} | report(
                risk_matrix(model, held), held, model.threshold
            )
    folder = out if out is not None else get_settings().data_dir / "models" / model.version
    if worlds:
        from autopilot.runtime.health.default_model import save_with_worlds

        save_with_worlds(model, folder, model.card.pop("worlds"))
    else:
        model.save(folder)
    print_trained(model, folder, as_json)


@contextmanager
def _refusals(as_json: bool) -> Iterator[None]:
    """Training refused: a failed leakage check with its figures, anything else plainly."""
    from autopilot.runtime.health.leakage import LeakageError

    try:
        yield
    except LeakageError as err:
        if as_json:
            emit_json({"ok": False, "error": str(err), "leakage_check": err.result})
            finish(2)
        fail(str(err), as_json=False)
    except ValueError as err:
        fail(str(err), as_json=as_json)


def _train_on_store(
    cut: date | None,
    rule: Rule,
    validate_months: int,
    max_gain_share: float,
    max_auc_gap: float,
    simulate: int,
    org: str,
    as_json: bool,
) -> HealthModel:
    from rich.progress import Progress

    from autopilot.runtime.devstack.simulator import simulate as sim
    from autopilot.runtime.health.asof import load_history
    from autopilot.runtime.health.honest import train_time_honest
    from autopilot.runtime.health.training import write_history
    from autopilot.runtime.store.db import make_engine

    if simulate:
        db = make_engine(f"sqlite:///{tempfile.mkdtemp(prefix='autopilot-sim-')}/history.db")
        write_history(db, sim(simulate, seed=1), start=date.today() - timedelta(days=300))
    else:
        db = _db()
    with Progress(console=console, disable=as_json, transient=True) as bar:
        task = bar.add_task("reading the history as of each day", total=2)
        with _refusals(as_json):
            history = load_history(db, org_id=org or None)
            bar.update(task, advance=1, description="training model and baseline")
            model = train_time_honest(
                db,
                cutoff=cut,
                validate_months=validate_months,
                rule=rule,
                org_id=org or None,
                max_gain_share=max_gain_share,
                max_auc_gap=max_auc_gap,
                history=history,
            )
        bar.update(task, advance=1)
    return model


def _train_on_worlds(
    n: int, rule: Rule, validate_months: int, max_gain_share: float, report: int, as_json: bool
) -> HealthModel:
    from rich.progress import Progress

    from autopilot.runtime.devstack.worlds import WORLDS
    from autopilot.runtime.health.default_model import train_on_worlds
    from autopilot.runtime.health.worlds import evaluate

    with Progress(console=console, disable=as_json, transient=True) as bar:
        task = bar.add_task("simulating", total=2 * len(WORLDS) + 2)

        def step(what: str) -> None:
            bar.update(task, advance=1, description=what)

        with _refusals(as_json):
            model = train_on_worlds(
                n,
                rule=rule,
                validate_months=validate_months,
                max_gain_share=max_gain_share,
                progress=step,
            )
        model.card["worlds"] = evaluate(
            model, n=report, progress=lambda w: step(f"evaluating on world {w}")
        )
    return model


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
    print_report(result)
    finish(0)


@model_app.command("worlds")
def worlds_cmd(
    accounts: Annotated[int, typer.Option(help="simulated accounts per world")] = 1000,
    as_json: JsonOpt = False,
) -> None:
    """The current model on each of the simulator's worlds (fresh seeds), through the
    live scorer's path and the card's threshold. Alert rate: the share of accounts with
    at least one alert in the evaluation period; base rate: the share that churn in it;
    the bar is alert rate at most 2x base rate on every world."""
    from rich.progress import Progress

    from autopilot.runtime.devstack.worlds import WORLDS
    from autopilot.runtime.health.scoring import current_model
    from autopilot.runtime.health.worlds import BUDGET, evaluate

    if accounts < 20:
        fail("accounts: at least 20 per world", as_json=as_json)
    try:
        model = current_model()
    except (OSError, ValueError) as err:
        fail(f"model: cannot load the configured model: {err}", as_json=as_json)
    with Progress(console=console, disable=as_json, transient=True) as bar:
        task = bar.add_task("worlds", total=len(WORLDS))

        def step(name: str) -> None:
            bar.update(task, advance=1, description=f"world {name}")

        rows = evaluate(model, n=accounts, progress=step)
    ok = all(r["meets_budget"] for r in rows)
    if as_json:
        emit_json(
            {
                "ok": True,
                "model": model.version,
                "budget": BUDGET,
                "meets_budget": ok,
                "worlds": rows,
            }
        )
        finish(0)
    console.print(f"{model.version}, threshold {model.threshold}, {accounts} accounts per world")
    print_worlds(rows)
    console.print(
        f"alert rate ≤ {BUDGET:g}x base rate on every world: {'yes' if ok else '[bold red]NO[/bold red]'}"
    )
    finish(0)
