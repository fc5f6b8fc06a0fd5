"""What `autopilot model …` prints without `--json`: the trained model's card, the
held-out report on the store, and the table of the simulator's worlds."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from autopilot.runtime.cli.output import console, emit_json, finish

if TYPE_CHECKING:
    from autopilot.runtime.health.model import HealthModel


def print_trained(model: HealthModel, folder: Path, as_json: bool) -> None:
    """`model train`: the card's figures (or the card as JSON), then exit."""
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
    if rows := model.card.get("worlds"):
        print_worlds(rows)
    finish(0)


def print_report(result: dict[str, Any]) -> None:
    """`model report`: the held-out period on the store, the forecasts, the simulator."""
    r, f = result["store"], result["forecasts"]
    if "error" in r:
        console.print(f"[bold red]no held-out report on the store: {r['error']}[/bold red]")
    else:
        print_store_report(r)
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


def print_store_report(r: dict) -> None:
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


def print_worlds(rows: list[dict[str, Any]]) -> None:
    from rich import box
    from rich.table import Table

    table = Table(
        caption="base: accounts that churn in the evaluation period; alerted: accounts with "
        "≥ 1 alert in it; lead: median days from first alert to churn; bAUC: plain baseline",
        box=box.SIMPLE_HEAD,
        pad_edge=False,
        padding=(0, 1),
    )
    heads = ("world", "base", "alerted", "ratio", "prec", "recall", "lead", "AUC", "bAUC")
    for name in heads:
        table.add_column(name, justify="left" if name == "world" else "right", no_wrap=True)

    def num(v: float | None, spec: str) -> str:
        return "-" if v is None else format(v, spec)

    for r in rows:
        ratio = f"{r['ratio']:.2f}x"
        table.add_row(
            r["world"],
            f"{r['base_rate']:.1%}",
            f"{r['alert_rate']:.1%}",
            ratio if r["meets_budget"] else f"[bold red]{ratio}[/bold red]",
            num(r.get("precision"), ".2f"),
            num(r.get("recall"), ".2f"),
            num(r.get("median_lead_days"), ".0f"),
            num(r["auc"], ".3f"),
            num(r.get("baseline_auc"), ".3f"),
        )
    console.print(table)
