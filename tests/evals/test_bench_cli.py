"""`autopilot bench` end to end through the CLI, on the cheapest bench (policy): the
combined JSON, every figure beside its same-run baseline with the right ratio, and the
files (JSON + PNG) under the data directory. No timing is asserted: the machine is shared."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from autopilot.evals.bench.results import figure


def _bench(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "AUTOPILOT_DATA_DIR": str(tmp_path)}
    return subprocess.run(
        [sys.executable, "-m", "autopilot.runtime.cli.main", "bench", *args],
        env=env,
        check=False,
        capture_output=True,
        text=True,
        timeout=600,
    )


def test_bench_policy_quick_json_gives_figures_ratios_and_files(tmp_path: Path) -> None:
    done = _bench(tmp_path, "policy", "--quick", "--json")
    assert done.returncode == 0, done.stderr[-2000:]
    out = json.loads(done.stdout)
    assert out["ok"] is True and out["quick"] is True
    (result,) = out["results"]
    assert result["name"] == "policy" and result["ok"] is True and result["error"] is None
    assert result["machine"]["cpus"] >= 1 and result["at"]
    names = {f["name"].split(" (")[0] for f in result["figures"]}
    assert {"gate throughput", "gate p50", "gate p99"} <= names
    for f in result["figures"]:
        assert f["value"] > 0 and f["baseline"] > 0 and f["unit"]
        assert f["baseline_label"].startswith("raw ")
        assert abs(f["ratio"] - f["value"] / f["baseline"]) <= 0.002 * f["ratio"] + 1e-3
    written = tmp_path / "bench" / "policy.json"
    assert json.loads(written.read_text())["figures"] == result["figures"]
    png = tmp_path / "bench" / "policy.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert result["files"] == {"json": str(written), "png": str(png)}


def test_bench_unknown_name_is_a_clear_error(tmp_path: Path) -> None:
    done = _bench(tmp_path, "nope", "--json")
    assert done.returncode == 2
    assert "unknown name 'nope'" in json.loads(done.stdout)["error"]


def test_a_goal_is_met_or_missed_and_shown() -> None:
    met = figure("sweep", 42.0, "s", baseline=21.0, goal_max=60)
    missed = figure("sweep", 75.0, "s", baseline=25.0, goal_max=60)
    assert (met.ratio, met.passed, met.goal) == (2.0, True, "< 60 s")
    assert (missed.ratio, missed.passed) == (3.0, False)
    assert figure("throughput", 10, "runs/s", baseline=5, goal_min=8).passed is True
    assert figure("no goal", 1.0, "s", baseline=2.0).passed is None
    # A goal on the ratio to the same-run baseline (the action path against bare Temporal).
    fast = figure("event p50", 40.0, "ms", baseline=84.0, baseline_label="bare", goal_ratio_max=0.5)
    slow = figure("event p50", 45.0, "ms", baseline=84.0, baseline_label="bare", goal_ratio_max=0.5)
    assert (fast.passed, fast.goal, slow.passed) == (True, "≤ 0.5× bare", False)
