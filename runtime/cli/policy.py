"""`autopilot policy …`: check, test, eval, what-if, and the decision log."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer

from autopilot.runtime.cli.output import console, emit_json, fail, finish
from autopilot.runtime.config import get_settings

app = typer.Typer(
    no_args_is_help=True, help="Policies: check, test, evaluate, what-if, decision log."
)
JsonOpt = Annotated[bool, typer.Option("--json", help="print one JSON object on stdout")]
BundleOpt = Annotated[
    Path | None, typer.Option("--bundle", help="policy folder (default: the configured one)")
]


def _engine(bundle: Path | None, as_json: bool) -> Any:
    from autopilot.runtime.policy.engine import PolicyLoadError
    from autopilot.runtime.policy.rego import RegoEngine
    from autopilot.runtime.services import make_policy_engine

    settings = get_settings()
    try:
        return RegoEngine(bundle) if bundle else make_policy_engine(settings)
    except (PolicyLoadError, ValueError) as err:
        fail(str(err), as_json=as_json, code=1)


@app.command()
def check(bundle: BundleOpt = None, as_json: JsonOpt = False) -> None:
    """Validate every data.json against its schema, compile every package and run the
    policy's own cases; a failure names the file and line (or the case)."""
    from autopilot.runtime.policy.bundle import bundle_files
    from autopilot.runtime.policy.cases import run_all

    folder = bundle or get_settings().policies_path
    engine = _engine(folder, as_json)
    modules = sorted(n for n in bundle_files(folder) if n.endswith(".rego"))
    failed = [r for r in run_all(engine, folder) if not r.ok]
    if failed:
        first = failed[0]
        fail(
            f"{len(failed)} policy case(s) fail, first {first.case.source} {first.case.name}: "
            f"{'; '.join(first.problems)}",
            as_json=as_json,
            code=1,
        )
    if as_json:
        emit_json({"ok": True, "bundle_hash": engine.bundle_hash, "modules": modules})
    else:
        console.print(
            f"ok: {len(modules)} modules compile, data valid, cases pass; bundle {engine.bundle_hash[:12]}"
        )
    finish(0)


@app.command("test")
def test_cmd(bundle: BundleOpt = None, as_json: JsonOpt = False) -> None:
    """Run every policy test case (policies/**/cases.yaml); non-zero exit on any failure."""
    from autopilot.runtime.policy.cases import run_all

    folder = bundle or get_settings().policies_path
    results = run_all(_engine(bundle, as_json), folder)
    failed = [r for r in results if not r.ok]
    if as_json:
        emit_json(
            {
                "ok": not failed,
                "passed": len(results) - len(failed),
                "failed": len(failed),
                "failures": [
                    {"case": r.case.name, "source": r.case.source, "problems": r.problems}
                    for r in failed
                ],
            }
        )
    else:
        for r in failed:
            console.print(f"[red]FAIL[/red] {r.case.source} {r.case.name}: {'; '.join(r.problems)}")
        console.print(f"{len(results) - len(failed)} passed, {len(failed)} failed")
    finish(1 if failed else 0)


@app.command("eval")
def eval_cmd(
    input_file: Annotated[Path, typer.Option("--input", help="a JSON policy input")],
    bundle: BundleOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Evaluate one input; print the decision and the rules that fired."""
    from autopilot.runtime.policy.engine import decide_raw

    try:
        payload = json.loads(input_file.read_text())
    except (OSError, json.JSONDecodeError) as err:
        fail(f"{input_file}: {err}", as_json=as_json)
    decision = decide_raw(_engine(bundle, as_json), payload)
    fired = [f"deny {v.code}: {v.msg}" for v in decision.deny]
    fired += [f"approval {a.role}: {a.reason}" for a in decision.approval]
    fired += [
        f"obligation {o.get('type')}: {json.dumps(o, sort_keys=True)}" for o in decision.obligations
    ]
    if as_json:
        emit_json({"decision": decision.model_dump(mode="json"), "fired": fired})
    else:
        console.print(f"[bold]{decision.outcome}[/bold] (bundle {decision.bundle_hash[:12]})")
        for line in fired:
            console.print(f"  {line}")
    finish(0)


@app.command()
def whatif(
    bundle: Annotated[Path, typer.Option("--bundle", help="the candidate policy folder")],
    since: str = "30d",
    as_json: JsonOpt = False,
) -> None:
    """Re-evaluate logged decisions against a candidate bundle: what would change."""
    from autopilot.runtime.policy.decisions import parse_since
    from autopilot.runtime.policy.decisions import whatif as run_whatif
    from autopilot.runtime.store.db import make_engine, transaction

    try:
        span = parse_since(since)
    except ValueError as err:
        fail(str(err), as_json=as_json)
    candidate = _engine(bundle, as_json)
    with transaction(make_engine(get_settings().db_url)) as session:
        report = run_whatif(session, candidate, since=datetime.now(UTC) - span)
    if as_json:
        emit_json(report)
        finish(0)
    console.print(
        f"{report['evaluated']} decisions re-evaluated against {bundle} "
        f"({report['bundle_hash'][:12]}); {report['changed']} would change"
    )
    for key, n in report["transitions"].items():
        console.print(f"  {key:<34} {n}")
    for key, items in report["examples"].items():
        for ex in items:
            console.print(
                f"  e.g. {key}: {ex['run_key']} codes {ex['codes_before']} → {ex['codes_after']}, "
                f"roles {ex['roles_before']} → {ex['roles_after']}"
            )
    finish(0)


@app.command()
def log(
    account: str | None = None,
    agent: str | None = None,
    code: str | None = None,
    outcome: str | None = None,
    limit: int = 50,
    as_json: JsonOpt = False,
) -> None:
    """The decision log, newest first."""
    from autopilot.runtime.policy.decisions import query
    from autopilot.runtime.store.db import make_engine, transaction

    with transaction(make_engine(get_settings().db_url)) as session:
        rows = query(
            session, account_id=account, agent=agent, code=code, outcome=outcome, limit=limit
        )
    if as_json:
        emit_json({"decisions": [r.model_dump(mode="json") for r in rows]})
        finish(0)
    for r in rows:
        console.print(
            f"{r.decided_at:%Y-%m-%d %H:%M} {r.outcome:<16} {r.account_id:<10} {r.agent:<13} "
            f"{' '.join(r.codes) or '-'} {('roles=' + ','.join(r.roles)) if r.roles else ''}"
        )
    console.print(f"{len(rows)} decision(s)")
    finish(0)


@app.command()
def purge(as_json: JsonOpt = False) -> None:
    """Delete logged decisions older than the retention (AUTOPILOT_DECISION_LOG_RETENTION_DAYS)."""
    from autopilot.runtime.policy.decisions import purge as run_purge
    from autopilot.runtime.store.db import make_engine

    settings = get_settings()
    n = run_purge(
        make_engine(settings.db_url),
        retention_days=settings.decision_log_retention_days,
        now=datetime.now(UTC),
    )
    emit_json({"ok": True, "deleted": n}) if as_json else console.print(f"deleted {n} decision(s)")
    finish(0)


@app.command()
def schema() -> None:
    """Print the JSON schema of the policy input (policies/input.schema.json is this)."""
    from autopilot.runtime.contracts.policy import PolicyInput

    emit_json(PolicyInput.model_json_schema())
    finish(0)
