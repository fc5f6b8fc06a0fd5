"""One document shape for every framework, written three ways: JSON (validated against the
framework's JSON Schema, so a dropped section fails loudly), Markdown and HTML (jinja2,
autoescaped: store text such as an agent's reason is data, never markup).

A gap is a first-class part of a document: evidence an auditor would expect and the store
does not hold. It is listed with a code and the section it belongs to, never left out."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from importlib import resources
from pathlib import Path
from typing import Any

import jinja2
from jsonschema import Draft202012Validator

FRAMEWORKS = ("eu-ai-act", "iso42001", "admt", "data-act", "model-cards")


@dataclass(frozen=True)
class Gap:
    code: str  # e.g. bench.no_results, kb.eval_not_run
    section: str  # the section key the missing evidence belongs to
    detail: str

    def as_json(self) -> dict[str, str]:
        return {"code": self.code, "section": self.section, "detail": self.detail}


@dataclass
class Section:
    key: str
    title: str
    data: dict[str, Any]


@dataclass
class Document:
    framework: str
    title: str
    generated_at: datetime
    source: dict[str, Any]  # where the figures came from: store, bundle hash, data dir
    sections: list[Section] = field(default_factory=list)
    gaps: list[Gap] = field(default_factory=list)

    def add(self, key: str, title: str, data: dict[str, Any]) -> None:
        self.sections.append(Section(key, title, data))

    def gap(self, code: str, section: str, detail: str) -> None:
        self.gaps.append(Gap(code, section, detail))

    def as_json(self) -> dict[str, Any]:
        return {
            "framework": self.framework,
            "title": self.title,
            "generated_at": self.generated_at.isoformat(),
            "source": self.source,
            "sections": {s.key: s.data for s in self.sections},
            "gaps": [g.as_json() for g in self.gaps],
        }


def schema(framework: str) -> dict[str, Any]:
    text = (
        resources.files("autopilot.runtime.compliance") / "schemas" / f"{framework}.json"
    ).read_text()
    return json.loads(text)


def schema_errors(document: dict[str, Any], framework: str) -> list[str]:
    """Every violation, as `path: message` (empty: the document is valid)."""
    validator = Draft202012Validator(schema(framework))
    return [
        f"{'/'.join(str(p) for p in err.absolute_path) or '<document>'}: {err.message}"
        for err in sorted(validator.iter_errors(document), key=lambda e: list(e.absolute_path))
    ]


@dataclass(frozen=True)
class Written:
    framework: str
    files: list[Path]
    gaps: list[Gap]
    schema_errors: list[str]

    @property
    def valid(self) -> bool:
        return not self.schema_errors

    def summary(self) -> dict[str, Any]:
        return {
            "framework": self.framework,
            "files": [str(f) for f in self.files],
            "gaps": [g.as_json() for g in self.gaps],
            "schema_valid": self.valid,
            "schema_errors": self.schema_errors,
        }


def write(doc: Document, out: Path, *, stem: str | None = None) -> Written:
    """`<stem>.json`, `.md` and `.html` in `out`; the JSON is validated before it is written."""
    out.mkdir(parents=True, exist_ok=True)
    stem = stem or doc.framework
    body = doc.as_json()
    errors = schema_errors(body, doc.framework)
    files = [out / f"{stem}.json", out / f"{stem}.md", out / f"{stem}.html"]
    files[0].write_text(json.dumps(body, indent=2, sort_keys=True, default=str) + "\n")
    files[1].write_text(markdown(doc))
    files[2].write_text(html(doc))
    return Written(doc.framework, files, list(doc.gaps), errors)


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, dict | list):
        return json.dumps(value, default=str, sort_keys=True)
    return "" if value is None else str(value)


def _is_table(value: Any) -> bool:
    return isinstance(value, list) and bool(value) and all(isinstance(v, dict) for v in value)


def _columns(rows: list[dict[str, Any]]) -> list[str]:
    cols: list[str] = []
    for row in rows:
        cols += [k for k in row if k not in cols]
    return cols


def _md_value(key: str, value: Any, depth: int) -> list[str]:
    if _is_table(value):
        cols = _columns(value)
        lines = [f"{'#' * depth} {key}", "", "| " + " | ".join(cols) + " |"]
        lines.append("|" + "---|" * len(cols))
        for row in value:
            cells = (_cell(row.get(c)).replace("|", "\\|").replace("\n", " ") for c in cols)
            lines.append("| " + " | ".join(cells) + " |")
        return [*lines, ""]
    if isinstance(value, dict) and value:
        lines = [f"{'#' * depth} {key}", ""]
        scalars = {k: v for k, v in value.items() if not (_is_table(v) or isinstance(v, dict))}
        lines += [f"- **{k}**: {_cell(v)}" for k, v in scalars.items()]
        lines.append("")
        for k, v in value.items():
            if k not in scalars:
                lines += _md_value(k, v, min(depth + 1, 6))
        return lines
    return [f"- **{key}**: {_cell(value) or '(none)'}"]


def markdown(doc: Document) -> str:
    lines = [f"# {doc.title}", "", f"Generated {doc.generated_at.isoformat()}.", ""]
    lines += [f"- **{k}**: {_cell(v)}" for k, v in doc.source.items()]
    lines.append("")
    for s in doc.sections:
        lines += _md_value(s.title, s.data, 2)
    lines += ["## Gaps: evidence missing", ""]
    if not doc.gaps:
        lines.append("None.")
    for g in doc.gaps:
        lines.append(f"- `{g.code}` ({g.section}): {g.detail}")
    return "\n".join(lines) + "\n"


_env = jinja2.Environment(
    loader=jinja2.PackageLoader("autopilot.runtime.compliance", "templates"),
    autoescape=True,
    undefined=jinja2.StrictUndefined,
)
_env.filters["cell"] = _cell
_env.tests["table"] = _is_table
_env.globals["columns"] = _columns


def html(doc: Document) -> str:
    return _env.get_template("report.html.j2").render(doc=doc)
