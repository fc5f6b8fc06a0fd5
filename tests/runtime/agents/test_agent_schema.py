"""agents/agent.schema.json: generated from AgentSpec, committed, and what an editor
validates agents/*.yaml with."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest
import yaml

from autopilot.runtime.agents.schema import agent_schema, schema_text, write_schema
from tests.conftest import REPO

SCHEMA = REPO / "agents" / "agent.schema.json"
AGENTS = sorted((REPO / "agents").glob("*.yaml"))
HEADER = "# yaml-language-server: $schema=agent.schema.json"


def validator() -> jsonschema.Draft202012Validator:
    schema = json.loads(SCHEMA.read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def test_the_committed_schema_is_the_generated_one() -> None:
    assert SCHEMA.read_text() == schema_text(), (
        "agents/agent.schema.json is stale: run `python -m autopilot.runtime.agents.schema`"
    )


def test_the_schema_follows_the_model(monkeypatch: pytest.MonkeyPatch) -> None:
    """A field added to AgentSpec shows in the generated schema (so the file test above
    fails until the file is regenerated); the loader's own field never does."""
    from autopilot.runtime.contracts import agent_spec

    assert "template_sources" in agent_spec.AgentSpec.model_fields
    assert "template_sources" not in agent_schema()["properties"]
    before = schema_text()

    class Wider(agent_spec.AgentSpec):
        owner_team: str = "cs"

    monkeypatch.setattr("autopilot.runtime.agents.schema.AgentSpec", Wider)
    assert "owner_team" in agent_schema()["properties"]
    assert schema_text() != before


def test_write_schema_writes_the_text(tmp_path: Path) -> None:
    assert write_schema(tmp_path) == tmp_path / "agent.schema.json"
    assert (tmp_path / "agent.schema.json").read_text() == schema_text()


def test_five_agents_ship() -> None:
    assert {p.stem for p in AGENTS} >= {
        "renewal",
        "adoption",
        "expansion",
        "churn_rescue",
        "compliance",
    }


@pytest.mark.parametrize("path", AGENTS, ids=lambda p: p.stem)
def test_every_agent_validates_against_the_schema(path: Path) -> None:
    assert path.read_text().splitlines()[0] == HEADER
    errors = [
        f"{'.'.join(map(str, e.absolute_path))}: {e.message}"
        for e in validator().iter_errors(yaml.safe_load(path.read_text()))
    ]
    assert errors == []


@pytest.mark.parametrize(
    ("old", "new", "where"),
    [
        ("priority: 100", "priority: high", "priority"),
        ("priority: 100", "priorty: 100", ""),  # a typo'd key
        ("autonomy: approve", "autonomy: yolo", "autonomy"),
        ("  - wait: 5d", "  - wait: five days", "playbook.2"),
        ("  - id: rescue_email", "  - id: Rescue Email", "playbook.0"),
        ("    do: education_email", "    do: []", "playbook.0"),
    ],
)
def test_the_schema_catches_what_an_editor_should(old: str, new: str, where: str) -> None:
    text = (REPO / "agents" / "churn_rescue.yaml").read_text()
    assert old in text
    data = yaml.safe_load(text.replace(old, new, 1))
    errors = list(validator().iter_errors(data))
    assert errors, f"{new!r} passed the schema"
    assert any(".".join(map(str, e.absolute_path)) == where for e in errors)


def test_an_agent_needs_a_trigger_or_a_schedule() -> None:
    data = yaml.safe_load((REPO / "agents" / "churn_rescue.yaml").read_text())
    del data["trigger"]
    assert list(validator().iter_errors(data))
    data["schedule"] = "0 6 * * *"
    assert list(validator().iter_errors(data)) == []


def test_the_loader_field_is_not_for_authors() -> None:
    data = yaml.safe_load((REPO / "agents" / "churn_rescue.yaml").read_text())
    data["template_sources"] = {"rescue_email": "hi"}
    assert list(validator().iter_errors(data))
