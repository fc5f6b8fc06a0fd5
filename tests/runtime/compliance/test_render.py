"""The rendering every framework shares: store text is escaped in HTML, and a document
missing a section its schema requires is reported invalid, not written as if complete."""

from __future__ import annotations

from pathlib import Path

from autopilot.runtime.compliance.evidence import utc_now
from autopilot.runtime.compliance.render import Document, html, write


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
