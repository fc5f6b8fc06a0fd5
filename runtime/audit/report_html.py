"""The replay report as one self-contained HTML page (no scripts, no external assets),
to attach to an audit file. Every value is escaped by jinja2's autoescape: the report
shows agent output and event payloads, which are not trusted markup."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from jinja2 import Environment, PackageLoader, select_autoescape

from autopilot.runtime.audit.replay import ReplayReport

_env = Environment(
    loader=PackageLoader("autopilot.runtime.audit", "templates"),
    autoescape=select_autoescape(default=True, default_for_string=True),
    trim_blocks=True,
    lstrip_blocks=True,
)
_env.filters["pretty"] = lambda v: json.dumps(v, indent=2, sort_keys=True, default=str)  # pyright: ignore[reportUnknownLambdaType]


def render(report: ReplayReport) -> str:
    data: dict[str, Any] = report.as_json()
    return _env.get_template("replay.html").render(r=data)


def write(report: ReplayReport, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render(report), encoding="utf-8")
    return path
