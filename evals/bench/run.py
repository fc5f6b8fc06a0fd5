"""Run the benches (one, or all) and put their figures in one shape: each bench in its own
process — they start Temporal dev servers and end with `os._exit`, and a crash in one must
not take the others down — then its own JSON is read back and mapped to `BenchResult`
(figure, same-run baseline, ratio, goal). `autopilot bench` shells out to this module:
nothing in runtime/ imports evals/.

    python -m autopilot.evals.bench.run [all|NAME] [--quick] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from autopilot.evals.bench.results import BenchResult, Figure, figure, write
from autopilot.runtime.config import Settings

Adapter = Callable[[dict[str, Any], dict[str, Any]], list[Figure]]


def _policy(raw: dict[str, Any], _: dict[str, Any]) -> list[Figure]:
    """Each engine's gate against that engine's raw evaluation. Only reads policy.py's
    output (another change owns its measurement); both its shapes are read: one engine
    (`gate`, `raw_regopy`) or one per engine (`gate_<engine>`, `raw_<engine>`)."""
    pairs = [
        (f" ({e})", raw[f"gate_{e}"], raw[f"raw_{e}"], f"raw {e}")
        for e in ("regorus", "regopy")
        if f"gate_{e}" in raw
    ] or [("", raw["gate"], raw["raw_regopy"], "raw regopy")]
    out = []
    for tag, gate, bare, base in pairs:
        out += [
            figure(
                f"gate throughput{tag}",
                gate["per_s"],
                "decisions/s",
                baseline=bare["per_s"],
                baseline_label=base,
                higher_is_better=True,
            ),
            # The goals are for the default engine, in process.
            figure(
                f"gate p50{tag}",
                gate["p50_us"],
                "µs",
                baseline=bare["p50_us"],
                baseline_label=base,
                goal_max=250 if tag == " (regorus)" else None,
            ),
            figure(
                f"gate p99{tag}",
                gate["p99_us"],
                "µs",
                baseline=bare["p99_us"],
                baseline_label=base,
                goal_max=1000 if tag == " (regorus)" else None,
            ),
        ]
    return out


def _latency_pair(
    name: str, part: dict[str, Any], q: str, label: str, goal: float | None = None
) -> Figure:
    return figure(
        f"{name} {q}",
        part["agent"][f"{q}_ms"],
        "ms",
        baseline=part["bare_temporal"][f"{q}_ms"],
        baseline_label=label,
        goal_ratio_max=goal,
    )


# The goals, as ratios to the bare workflow measured in the same run: event →
# auto-allowed action executed p50 ≤ 0.5×, approve → executed p95 ≤ 0.8×.
_E2E_GOALS = {("event", "p50"): 0.5, ("approve", "p95"): 0.8}


def _e2e(raw: dict[str, Any], _: dict[str, Any]) -> list[Figure]:
    bare = "bare Temporal workflow, same activities"
    return [
        _latency_pair(
            f"{kind} → executed", raw[f"{kind}_to_executed"], q, bare, _E2E_GOALS.get((kind, q))
        )
        for kind in ("event", "approve")
        for q in ("p50", "p95")
    ]


def _inbox(raw: dict[str, Any], _: dict[str, Any]) -> list[Figure]:
    static = raw["health_static"]["p99_ms"]
    out = [
        figure(
            f"GET /approvals {label} p99",
            raw[key]["p99_ms"],
            "ms",
            baseline=static,
            baseline_label="GET /health, same process",
            goal_max=goal,  # the issue's: p99 < 50 ms for the manager and CSM lists
        )
        for key, label, goal in (
            ("list_manager", "(manager)", 50),
            ("list_csm_book", "(CSM book)", 50),
            ("list_page_200", "?limit=200", None),
        )
    ]
    # The server's CPU per request (its process, over the phase): what bounds the rate
    # one process can serve, whatever else the machine is running.
    static_cpu = raw["health_static"].get("server_cpu_ms_per_req")
    out += [
        figure(
            f"GET /approvals {label} server CPU/request",
            raw[key]["server_cpu_ms_per_req"],
            "ms",
            baseline=static_cpu,
            baseline_label="GET /health, same process",
        )
        for key, label in (("list_manager", "(manager)"), ("list_csm_book", "(CSM book)"))
        if "server_cpu_ms_per_req" in raw[key]
    ]
    if "approve_to_executed" in raw:
        out.append(
            _latency_pair(
                "approve → executed", raw["approve_to_executed"], "p95", "bare Temporal update"
            )
        )
    return out


def _ingest(raw: dict[str, Any], _: dict[str, Any]) -> list[Figure]:
    bare = raw["baseline_executemany"]["per_s"]
    label = "bare executemany of the same rows"
    idle, busy = raw["api_idle"], raw["api_under_import"]
    return [
        figure(
            "import with triggers",
            raw["import"]["per_s"],
            "events/s",
            baseline=bare,
            baseline_label=label,
            higher_is_better=True,
        ),
        figure(
            "import with triggers, API under load",
            raw["import_under_api_load"]["per_s"],
            "events/s",
            baseline=bare,
            baseline_label=label,
            higher_is_better=True,
        ),
        *(
            figure(
                f"{name} p99 under import",
                busy[name]["p99_ms"],
                "ms",
                baseline=idle[name]["p99_ms"],
                baseline_label="same endpoint, API idle",
            )
            for name in idle
        ),
    ]


def _scaled(goal: float, n: int, full: int) -> tuple[float, str]:
    """The issue's goal at its size, scaled linearly to a quick run's size."""
    bound = goal * n / full
    if n == full:
        return bound, f"< {goal:g} s"
    return bound, f"< {bound:.3g} s ({goal:g} s per {full:,}, scaled)"


def _scoring(raw: dict[str, Any], params: dict[str, Any]) -> list[Figure]:
    full, inc = raw["full_rescore"], raw["incremental"]
    bound, goal = _scaled(10, int(raw["accounts"]), 10_000)
    return [
        figure(
            f"full rescore of {raw['accounts']:,} accounts",
            full["seconds"],
            "s",
            baseline=full["baseline_numpy_s"],
            baseline_label="numpy window features + bare LightGBM predict",
            goal_max=bound,
            goal=goal,
        ),
        figure(
            "incremental rescore per event p95",
            inc["p95_ms"],
            "ms",
            baseline=inc["baseline_query_p95_ms"],
            baseline_label="bare one-account window query",
            goal_max=100,
        ),
    ]


def _sweep(raw: dict[str, Any], _: dict[str, Any]) -> list[Figure]:
    bound, goal = _scaled(60, int(raw["accounts"]), 10_000)
    return [
        figure(
            f"daily sweep of {raw['accounts']:,} accounts ({raw['started']} starts)",
            raw["sweep_s"],
            "s",
            baseline=raw["baseline"]["seconds"],
            baseline_label="bare CEL over the same accounts + bare Temporal starts",
            goal_max=bound,
            goal=goal,
        )
    ]


def _workers(raw: dict[str, Any], _: dict[str, Any]) -> list[Figure]:
    one, two = raw["workers_1"], raw["workers_2"]
    return [
        figure(
            "agent runs/s, 2 worker processes",
            two["runs_per_s"],
            "runs/s",
            baseline=one["runs_per_s"],
            baseline_label="1 worker process, same server, same run",
            higher_is_better=True,
        )
    ]


@dataclass(frozen=True)
class Bench:
    module: str
    full: list[str]
    quick: list[str]
    adapt: Adapter


BENCHES: dict[str, Bench] = {
    "policy": Bench("policy", ["--n", "5000"], ["--n", "1000"], _policy),
    "scoring": Bench(
        "scoring",
        ["--accounts", "10000", "--events", "500"],
        ["--accounts", "1000", "--events", "100"],
        _scoring,
    ),
    "sweep": Bench("sweep", ["--accounts", "10000"], ["--accounts", "400"], _sweep),
    "ingest": Bench(
        "ingest",
        ["--events", "20000"],
        ["--events", "2000", "--accounts", "400", "--idle-seconds", "3", "--rate", "10"],
        _ingest,
    ),
    "e2e": Bench(
        "e2e", ["--runs", "200", "--approvals", "50"], ["--runs", "8", "--approvals", "4"], _e2e
    ),
    "inbox": Bench(
        "inbox",
        ["--pending", "10000"],
        ["--pending", "2000", "--rate", "50", "--seconds", "3", "--approvals", "4"],
        _inbox,
    ),
    "workers": Bench("workers", ["--runs", "120"], ["--runs", "16"], _workers),
}


def run_one(name: str, quick: bool, folder: Path, tick: Callable[[], None]) -> BenchResult:
    """The bench in a child process; its JSON mapped to the common shape and written."""
    bench = BENCHES[name]
    args = bench.quick if quick else bench.full
    result = BenchResult(name=name, quick=quick, params={"args": args})
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix=f"autopilot-bench-{name}-") as tmp:
        out, log = Path(tmp) / "out.json", Path(tmp) / "log.txt"
        with log.open("wb") as sink:
            proc = subprocess.Popen(
                [sys.executable, "-m", f"autopilot.evals.bench.{bench.module}", *args]
                + ["--out", str(out)],
                stdout=sink,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
            deadline = time.monotonic() + (900 if quick else 3 * 3600)
            while proc.poll() is None:
                if time.monotonic() > deadline:  # a hung bench must not hold up the rest
                    proc.kill()
                    proc.wait()
                    break
                tick()
                time.sleep(0.2)  # the progress bar's refresh, not a wait on a condition
        result.seconds = round(time.perf_counter() - t0, 2)
        if proc.returncode != 0 or not out.exists():
            tail = log.read_text(errors="replace").strip().splitlines()[-8:]
            result.ok = False
            result.error = f"exit {proc.returncode}: " + " | ".join(tail)
            return write(result, folder)
        result.raw = json.loads(out.read_text())
    try:
        result.figures = bench.adapt(result.raw, result.params)
    except (KeyError, TypeError, ValueError) as err:  # the bench's output changed shape
        result.ok = False
        result.error = f"unexpected output ({type(err).__name__}: {err})"
    return write(result, folder)


def table(results: list[BenchResult]) -> Table:
    t = Table(title="benches (ratio = figure / same-run baseline)")
    for col in ("bench", "figure", "value", "baseline", "ratio", "goal"):
        t.add_column(col, justify="right" if col in ("value", "baseline", "ratio") else "left")
    for r in results:
        if not r.ok:
            t.add_row(r.name, f"[red]failed[/red]: {r.error}", "", "", "", "")
            continue
        for f in r.figures:
            goal = (
                "" if f.goal is None else f"{f.goal} {'✓' if f.passed else '[red]✗ missed[/red]'}"
            )
            base = "" if f.baseline is None else f"{f.baseline:g} ({f.baseline_label})"
            ratio = "" if f.ratio is None else f"{f.ratio:g}×"
            t.add_row(r.name, f.name, f"{f.value:g} {f.unit}", base, ratio, goal)
    return t


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument(
        "name", nargs="?", default="all", help="all, or one of: " + ", ".join(BENCHES)
    )
    parser.add_argument("--quick", action="store_true", help="small sizes: minutes on 2 cores")
    parser.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    args = parser.parse_args()
    if args.name != "all" and args.name not in BENCHES:
        message = f"bench: unknown name {args.name!r} (all, {', '.join(BENCHES)})"
        if args.json:
            print(json.dumps({"ok": False, "error": message}))
        else:
            print(f"error: {message}", file=sys.stderr)
        sys.stdout.flush()
        os._exit(2)
    names = list(BENCHES) if args.name == "all" else [args.name]
    folder = Settings().data_dir / "bench"
    err = Console(stderr=True)
    results: list[BenchResult] = []
    with Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        TimeElapsedColumn(),
        TextColumn("{task.fields[status]}"),
        console=err,
    ) as progress:
        tasks = {n: progress.add_task(f"bench {n}", total=1, status="waiting") for n in names}
        for n in names:
            progress.update(tasks[n], status="running")
            r = run_one(n, args.quick, folder, lambda: progress.refresh())
            results.append(r)
            status = f"done in {r.seconds:g} s" if r.ok else "[red]failed[/red]"
            progress.update(tasks[n], completed=1, status=status)
    ok = all(r.ok for r in results)
    if args.json:
        combined = {"ok": ok, "quick": args.quick, "results": [r.model_dump() for r in results]}
        sys.stdout.write(json.dumps(combined, default=str) + "\n")
    else:
        Console(highlight=False).print(table(results))
        print(f"written under {folder}")
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0 if ok else 1)


if __name__ == "__main__":
    main()
