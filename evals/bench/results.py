"""One result shape for every bench, so that `autopilot bench` can show, compare and plot
them alike: each figure beside its same-run baseline and the ratio of the two (a figure
alone says more about the machine than about the code; the ratio is what travels), and
the issue's goal where it states one. Written to `<data_dir>/bench/<name>.json` with a
small PNG beside it."""

from __future__ import annotations

import os
import platform
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only: no display on a server or in CI
import matplotlib.pyplot as plt
from pydantic import BaseModel, Field


class Figure(BaseModel):
    """One measured figure. `ratio` is value / baseline (so > 1 means the product takes
    more, or does more, than the bare baseline — `higher_is_better` says which is good)."""

    name: str
    value: float
    unit: str
    baseline: float | None = None
    baseline_label: str = ""
    ratio: float | None = None
    higher_is_better: bool = False
    goal: str | None = None  # as the issue states it, e.g. "< 10 s"
    passed: bool | None = None  # None: the issue states no goal for this figure


def ratio(value: float, baseline: float | None) -> float | None:
    if baseline is None or baseline == 0:
        return None
    return round(value / baseline, 3)


def figure(
    name: str,
    value: float,
    unit: str,
    *,
    baseline: float | None = None,
    baseline_label: str = "",
    higher_is_better: bool = False,
    goal_max: float | None = None,
    goal_min: float | None = None,
    goal_ratio_max: float | None = None,
    goal: str | None = None,
) -> Figure:
    """A figure with its ratio and, given a goal bound (on the value, or on its ratio to
    the same-run baseline), whether it met it."""
    passed: bool | None = None
    share = ratio(value, baseline)
    if goal_ratio_max is not None and share is not None:
        passed = share <= goal_ratio_max
        goal = goal or f"≤ {goal_ratio_max:g}× {baseline_label or 'baseline'}"
    elif goal_max is not None:
        passed = value <= goal_max
        goal = goal or f"< {goal_max:g} {unit}"
    elif goal_min is not None:
        passed = value >= goal_min
        goal = goal or f"> {goal_min:g} {unit}"
    return Figure(
        name=name,
        value=round(value, 4),
        unit=unit,
        baseline=None if baseline is None else round(baseline, 4),
        baseline_label=baseline_label,
        ratio=share,
        higher_is_better=higher_is_better,
        goal=goal,
        passed=passed,
    )


def machine() -> dict[str, Any]:
    """What the figures were measured on (the load says whether the machine was shared)."""
    return {
        "cpus": os.cpu_count(),
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        "load_average_1m": round(os.getloadavg()[0], 2),
    }


class BenchResult(BaseModel):
    name: str
    quick: bool
    ok: bool = True
    error: str | None = None
    seconds: float = 0.0  # the bench's own wall time
    figures: list[Figure] = Field(default_factory=list)
    params: dict[str, Any] = Field(default_factory=dict)
    machine: dict[str, Any] = Field(default_factory=machine)
    at: str = Field(default_factory=lambda: datetime.now(UTC).isoformat())
    raw: dict[str, Any] = Field(default_factory=dict)  # the bench's own output, as it wrote it
    files: dict[str, str] = Field(default_factory=dict)


def plot(result: BenchResult, path: Path) -> None:
    """Each figure's ratio to its baseline as a bar, 1.0 marked: one glance per bench."""
    figs = [f for f in result.figures if f.ratio is not None]
    fig, ax = plt.subplots(figsize=(7, 0.5 + 0.45 * max(1, len(figs))))
    try:
        names = [f.name for f in figs]
        ratios = [f.ratio or 0.0 for f in figs]
        colours = [
            "#c0392b" if f.passed is False else "#2e86c1" if f.passed is None else "#27ae60"
            for f in figs
        ]
        ax.barh(names, ratios, color=colours)
        ax.axvline(1.0, color="black", linewidth=0.8)
        ax.invert_yaxis()
        ax.set_xlabel("ratio to the same-run baseline")
        mode = "quick" if result.quick else "full"
        ax.set_title(f"bench {result.name} ({mode}, {result.at[:19]}Z)", fontsize=9)
        for y, f in enumerate(figs):
            ax.text(
                f.ratio or 0.0, y, f" {f.ratio:g}× ({f.value:g} {f.unit})", va="center", fontsize=7
            )
        fig.tight_layout()
        fig.savefig(path, dpi=90)
    finally:
        plt.close(fig)


def write(result: BenchResult, folder: Path) -> BenchResult:
    """`<folder>/<name>.json` and `<name>.png`; the result names both."""
    folder.mkdir(parents=True, exist_ok=True)
    png = folder / f"{result.name}.png"
    if result.figures:
        plot(result, png)
        result.files["png"] = str(png)
    out = folder / f"{result.name}.json"
    result.files["json"] = str(out)
    out.write_text(result.model_dump_json(indent=2))
    return result
