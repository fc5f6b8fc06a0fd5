from __future__ import annotations

from pathlib import Path

import pytest

from autopilot.runtime.agents.specs import SpecError, load_spec, load_specs
from tests.conftest import REPO

GOOD = (REPO / "agents" / "churn_rescue.yaml").read_text()


def test_shipped_agents_load() -> None:
    specs = load_specs(REPO / "agents")
    assert set(specs) >= {"renewal", "adoption", "expansion", "churn_rescue"}
    rescue = specs["churn_rescue"]
    assert rescue.tools == ["send_email", "send_offer", "create_csm_task"]
    assert rescue.priority > specs["renewal"].priority > specs["expansion"].priority > specs["adoption"].priority
    # The templates beside the YAML are part of the spec (and of its hash).
    assert {"rescue_email", "rescue_email.de"} <= set(rescue.template_sources)


def _line(text: str, needle: str) -> int:
    return next(i for i, line in enumerate(text.splitlines(), 1) if needle in line)


@pytest.mark.parametrize(
    ("old", "new", "field", "at"),
    [
        ("  max_actions_per_run: 2", "  max_actions_per_run: many", "limits.max_actions_per_run", "max_actions_per_run"),
        ("  - send_offer", "  - 42", "tools.1", "  - 42"),
        ("goal:\n", "gaol:\n", "gaol", "gaol:"),
        ("name: churn_rescue", "name: Churn Rescue!", "name", "name: Churn"),
        ("  && account.health < 50.0", "  && account.health <", "trigger", "trigger:"),
        # Triggers that could never fire: an unknown field, a type mismatch, not a condition.
        ("  && account.health < 50.0", "  && account.helth < 50.0", "trigger", "trigger:"),
        ("  && account.health < 50.0", '  && account.health < "fifty"', "trigger", "trigger:"),
        ("  && account.health < 50.0", "  && event.score", "trigger", "trigger:"),
        # The playbook: conditions, options, arguments, templates.
        ("when: account.arr >= 50000.0", "when: account.ar >= 50000.0", "playbook.1.when", "when: account.ar "),
        ("when: account.arr >= 50000.0", "when: account.arr >=", "playbook.1.when", "when: account.arr >="),
        ("    do: education_email", "    do: carrier_pigeon", "playbook.0.do", "carrier_pigeon"),
        ("  - wait: 5d", "  - wait: 5 days", "playbook.2.wait", "wait: 5 days"),
        ("    templates: {body: rescue_email}", "    templates: {body: rescue_mail}", "playbook.0.templates.body", "rescue_mail"),
        ("      valid_days: 30", "      valid_days: soon", "playbook.1.args.valid_days", "valid_days: soon"),
        ("  goal_met: true", "  goal_met: sometimes", "exit.goal_met", "goal_met: sometimes"),
        ("priority: 100", "priority: -1", "priority", "priority: -1"),
    ],
)
def test_bad_field_names_file_line_and_field(tmp_path: Path, old: str, new: str, field: str, at: str) -> None:
    path = tmp_path / "churn_rescue.yaml"
    (tmp_path / "churn_rescue").symlink_to(REPO / "agents" / "churn_rescue")
    assert old in GOOD
    text = GOOD.replace(old, new)
    path.write_text(text)
    with pytest.raises(SpecError) as info:
        load_spec(path)
    err = info.value
    line = _line(text, at)
    assert (err.path, err.field, err.line) == (path, field, line)
    assert str(err).startswith(f"{path}:{line}: {field}:")


def test_a_step_option_whose_tool_is_not_granted_names_its_line(tmp_path: Path) -> None:
    text = GOOD.replace("    do: [csm_call, executive_outreach", "    do: [csm_call, in_app_guide")
    path = tmp_path / "churn_rescue.yaml"
    (tmp_path / "churn_rescue").symlink_to(REPO / "agents" / "churn_rescue")
    path.write_text(text)
    with pytest.raises(SpecError) as info:
        load_spec(path)
    assert info.value.field == "playbook.3.do.1" and "send_in_app_message" in str(info.value)


@pytest.mark.parametrize(
    ("template", "problem", "line"),
    [
        ("Hi {{ contact.name }},\n{% if %}\n", "<template>", 2),  # a syntax error: the template's own line
        ("Hi {{ contact.nickname }}\n", "playbook.0", None),  # a merge field that does not exist
    ],
)
def test_a_broken_template_names_its_file_or_step(tmp_path: Path, template: str, problem: str, line: int | None) -> None:
    folder = tmp_path / "churn_rescue"
    folder.mkdir()
    (folder / "rescue_email.j2").write_text(template)
    path = tmp_path / "churn_rescue.yaml"
    path.write_text(GOOD)
    with pytest.raises(SpecError) as info:
        load_spec(path)
    err = info.value
    assert err.field == problem
    if line is not None:
        assert err.path == folder / "rescue_email.j2" and err.line == line
    else:
        assert err.path == path and err.line == _line(GOOD, "- id: rescue_email") and "nickname" in str(err)


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
    assert info.value.field in {"goal", "tools", "playbook"}


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


def test_a_broken_language_variant_is_caught_too(tmp_path: Path) -> None:
    folder = tmp_path / "churn_rescue"
    folder.mkdir()
    good = (REPO / "agents" / "churn_rescue" / "rescue_email.j2").read_text()
    (folder / "rescue_email.j2").write_text(good)
    (folder / "rescue_email.de.j2").write_text("Hallo {{ contact.nmae }}\n")
    path = tmp_path / "churn_rescue.yaml"
    path.write_text(GOOD)
    with pytest.raises(SpecError) as info:
        load_spec(path)
    assert info.value.field == "playbook.0" and "nmae" in str(info.value)


def test_a_condition_that_fails_at_run_time_does_not_hold() -> None:
    from autopilot.runtime.agents.playbook import holds

    ctx = {"account": {"logins_30d": 10, "seats_used": 0}, "run": {"events": []}}
    assert holds("account.logins_30d / account.seats_used > 2", ctx) is False  # division by zero
    assert holds("run.events[0] == 'x'", ctx) is False  # no such index
    assert holds("account.logins_30d > 2", ctx) is True
