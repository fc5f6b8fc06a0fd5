from __future__ import annotations

from pathlib import Path

import pytest

from autopilot.runtime.agents.specs import SpecError, load_spec, load_specs
from tests.conftest import REPO

GOOD = (REPO / "agents" / "churn_rescue.yaml").read_text()


def test_shipped_agents_load() -> None:
    specs = load_specs(REPO / "agents")
    assert "churn_rescue" in specs
    assert specs["churn_rescue"].tools == ["send_email", "send_offer"]


@pytest.mark.parametrize(
    ("old", "new", "field", "line"),
    [
        ("  max_actions_per_run: 2", "  max_actions_per_run: many", "limits.max_actions_per_run", 14),
        ("  - send_offer", "  - 42", "tools.1", 12),
        ("goal: bring", "gaol: bring", "gaol", 9),
        ("name: churn_rescue", "name: Churn Rescue!", "name", 2),
        ("  && account.health < 50.0", "  && account.health <", "trigger", 6),
        # Triggers that could never fire: an unknown field, a type mismatch, not a condition.
        ("  && account.health < 50.0", "  && account.helth < 50.0", "trigger", 6),
        ("  && account.health < 50.0", '  && account.health < "fifty"', "trigger", 6),
        ("  && account.health < 50.0", "  && event.score", "trigger", 6),
    ],
)
def test_bad_field_names_file_line_and_field(tmp_path: Path, old: str, new: str, field: str, line: int) -> None:
    path = tmp_path / "agent.yaml"
    assert old in GOOD
    path.write_text(GOOD.replace(old, new))
    with pytest.raises(SpecError) as info:
        load_spec(path)
    err = info.value
    assert (err.path, err.field, err.line) == (path, field, line)
    assert str(err).startswith(f"{path}:{line}: {field}:")


def test_a_duplicate_key_is_an_error_not_a_rename(tmp_path: Path) -> None:
    path = tmp_path / "agent.yaml"
    path.write_text(GOOD + "name: renamed\n")
    with pytest.raises(SpecError) as info:
        load_spec(path)
    assert info.value.field == "<yaml>" and info.value.line == GOOD.count("\n") + 1


def test_broken_yaml_names_its_line(tmp_path: Path) -> None:
    path = tmp_path / "agent.yaml"
    path.write_text(GOOD.replace("tools:\n", "tools: [\n"))
    with pytest.raises(SpecError) as info:
        load_spec(path)
    assert info.value.field == "<yaml>" and info.value.line > 1


def test_missing_required_field(tmp_path: Path) -> None:
    path = tmp_path / "agent.yaml"
    path.write_text("name: x\ndescription: d\n")
    with pytest.raises(SpecError) as info:
        load_spec(path)
    assert info.value.field in {"trigger", "goal", "tools"}


def test_a_tool_beyond_the_granted_scopes_is_refused(tmp_path: Path) -> None:
    text = GOOD.replace("  - offer:create\n", "")
    path = tmp_path / "narrow.yaml"
    path.write_text(text)
    with pytest.raises(SpecError) as info:
        load_spec(path)
    assert info.value.field == "tools.1" and "offer:create" in str(info.value)
    assert info.value.line == text.splitlines().index("  - send_offer") + 1


def test_an_unknown_tool_names_its_line(tmp_path: Path) -> None:
    text = GOOD.replace("  - send_offer\n", "  - launch_rocket\n")
    path = tmp_path / "unknown.yaml"
    path.write_text(text)
    with pytest.raises(SpecError) as info:
        load_spec(path)
    assert info.value.field == "tools.1" and "launch_rocket" in str(info.value)
