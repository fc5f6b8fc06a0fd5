"""`autopilot bench [all|NAME] [--quick] [--json]`: the benchmarks under evals/bench/.

The runner lives in evals/ (nothing in runtime/ imports evals/), so this command only
starts it as a child process with the same arguments and passes its exit code on: the
progress bar, the table and the JSON are the runner's."""

from __future__ import annotations

import subprocess
import sys
from typing import Annotated

import typer

from autopilot.runtime.cli.output import finish


def bench(
    name: Annotated[
        str,
        typer.Argument(help="all, or one of: policy, scoring, sweep, ingest, e2e, inbox, workers"),
    ] = "all",
    quick: Annotated[bool, typer.Option("--quick", help="small sizes: minutes on 2 cores")] = False,
    as_json: Annotated[
        bool, typer.Option("--json", help="print one JSON object on stdout")
    ] = False,
) -> None:
    """Run the benches, each against its same-run baseline; JSON and a PNG per bench under
    the data directory (bench/). Exit code 1 if a bench failed to run (a missed goal is shown,
    not an error)."""
    cmd = [sys.executable, "-m", "autopilot.evals.bench.run", name]
    cmd += ["--quick"] * quick + ["--json"] * as_json
    finish(subprocess.call(cmd))
