"""The rendering every framework shares: store text is escaped in HTML, and a document
missing a section its schema requires is reported invalid, not written as if complete."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import yaml

from autopilot.runtime.compliance.evidence import ExportContext, utc_now
from autopilot.runtime.compliance.export import export
from autopilot.runtime.compliance.render import Document, html, write
from autopilot.runtime.policy.rego import RegoEngine
from autopilot.runtime.store.db import make_engine
from autopilot.tools.builtin import registry as default_registry
from tests.conftest import REPO, make_settings


def test_store_text_is_escaped_in_html() -> None:
    doc = Document("model-cards", "Cards", utc_now(), {"store": "x", "bundle_hash": "b"})
    doc.add("planners", "Planners", {"configurations": [{"kind": "<script>alert(1)</script>"}]})
    page = html(doc)
    assert "<script>alert(1)</script>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page


def test_a_document_without_a_required_section_is_invalid(tmp_path: Path) -> None:
    doc = Document("model-cards", "Cards", utc_now(), {"store": "x", "bundle_hash": "b"})
    doc.add("planners", "Planners", {"configurations": [], "llm_in_use": False})
    written = write(doc, tmp_path)
    assert not written.valid
    assert any("health_model" in e for e in written.schema_errors)
    assert all(f.exists() for f in written.files)


def test_model_cards_name_each_llm_configuration_without_its_key(tmp_path: Path) -> None:
    agents = tmp_path / "agents"
    shutil.copytree(REPO / "agents", agents, ignore=shutil.ignore_patterns("__pycache__"))
    spec = yaml.safe_load((agents / "adoption.yaml").read_text())
    spec["planner"] = {
        "kind": "llm",
        "provider": "openai",
        "model": "gpt-4o-mini",
        "api_key_env": "ADOPTION_OPENAI_KEY",
    }
    (agents / "adoption.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    settings = make_settings(tmp_path, agents_dir=agents)
    ctx = ExportContext(
        db=make_engine(settings.db_url),
        settings=settings,
        policy=RegoEngine(settings.policies_path),
        tools=default_registry,
        now=utc_now(),
    )
    written = export(ctx, "model-cards", tmp_path / "out")
    assert written.valid, written.schema_errors
    body = json.loads((tmp_path / "out" / "model-cards.json").read_text())
    planners = body["sections"]["planners"]
    assert planners["llm_in_use"] is True
    (llm,) = [c for c in planners["configurations"] if c["language_model"]]
    assert llm["agents"] == ["adoption"]
    assert (llm["language_model"]["provider"], llm["language_model"]["model"]) == (
        "openai",
        "gpt-4o-mini",
    )
    assert (
        "adoption"
        not in next(c for c in planners["configurations"] if not c["language_model"])["agents"]
    )
    assert "api_key_file" not in llm["language_model"]
