"""`autopilot agents …` run as a process, the way an author runs it (the CLI exits with
os._exit, so no CliRunner): the shipped agents validate; a broken copy fails with its
file:line; `new` → edit the YAML and a template → `validate` → `preview` works for a
new agent without touching Python, and the preview sends nothing."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import pytest
from sqlmodel import Session, select

from autopilot.runtime.accounts.snapshot import get_snapshot
from autopilot.runtime.devstack.seed import seed_portfolio
from autopilot.runtime.store.accounts import Account
from autopilot.runtime.store.actions import ActionRecord, PolicyDecisionRecord
from autopilot.runtime.store.approvals import Approval
from autopilot.runtime.store.db import make_engine
from autopilot.runtime.store.mail import ReceivedMail
from tests.conftest import REPO
from tests.runtime.test_cli import AUTOPILOT

FIVE = {"renewal", "adoption", "expansion", "churn_rescue", "compliance", "copilot"}  # shipped
# Settings that would point the CLI elsewhere than this test says.
_OURS = ("DATABASE_URL", "TEMPORAL_ADDRESS", "OPA_URL", "CHROMA_URL")


def cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    base = {
        k: v for k, v in os.environ.items() if not k.startswith("AUTOPILOT_") and k not in _OURS
    }
    return subprocess.run(
        [AUTOPILOT, "agents", *args],
        check=False,
        capture_output=True,
        text=True,
        timeout=120,
        env={**base, **(env or {})},
    )


@dataclass
class Portfolio:
    env: dict[str, str]
    db_url: str
    account: str  # at risk, its champion reachable in English


@pytest.fixture(scope="module")
def portfolio(tmp_path_factory: pytest.TempPathFactory) -> Portfolio:
    data = tmp_path_factory.mktemp("data")
    url = f"sqlite:///{data / 'autopilot.db'}"
    db = make_engine(url)
    seed_portfolio(db, n=40, today=date.today())
    with Session(db) as s:
        snapshots = [
            get_snapshot(s, account_id=a.id, today=date.today()) for a in s.exec(select(Account))
        ]
    reachable = [
        snap
        for snap in snapshots
        if snap is not None
        and any(
            c.role == "champion" and c.language == "en" and not c.opted_out for c in snap.contacts
        )
    ]
    riskiest = max(reachable, key=lambda snap: snap.churn_risk)
    assert riskiest.churn_risk > 0.3  # below churn_rescue's goal: the run has work to do
    return Portfolio(
        env={"AUTOPILOT_DATA_DIR": str(data), "DATABASE_URL": url}, db_url=url, account=riskiest.id
    )


def new_agent(
    tmp_path: Path, name: str = "my_rescue", template: str = "churn_rescue"
) -> tuple[dict[str, str], Path]:
    """A fresh agents folder (the configured one) with NAME made from TEMPLATE."""
    folder = tmp_path / "agents"
    env = {"AUTOPILOT_AGENTS_DIR": str(folder)}
    proc = cli("new", name, "--template", template, "--json", env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert json.loads(proc.stdout)["path"] == str(folder / f"{name}.yaml")
    return env, folder


def line_of(text: str, needle: str) -> int:
    return next(i for i, line in enumerate(text.splitlines(), 1) if needle in line)


def test_validate_passes_on_the_five_shipped_agents() -> None:
    proc = cli("validate", "--json")  # the configured folder: the shipped one
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = json.loads(proc.stdout)
    assert out["ok"] is True and {a["name"] for a in out["agents"]} == FIVE
    assert {a["path"] for a in out["agents"]} == {str(REPO / "agents" / f"{n}.yaml") for n in FIVE}
    text = cli("validate", str(REPO / "agents" / "renewal.yaml"))
    assert text.returncode == 0 and "renewal" in text.stdout


def test_list_and_show_describe_the_agents() -> None:
    listed = json.loads(cli("list", "--json").stdout)["agents"]
    renewal = next(a for a in listed if a["name"] == "renewal")
    assert {a["name"] for a in listed} == FIVE
    assert (
        renewal["schedule"] == "0 6 * * *"
        and renewal["priority"] == 80
        and renewal["autonomy"] == "approve"
    )
    assert "send_offer" in renewal["tools"] and renewal["goal"]["metric"] == "renewal_probability"
    shown = json.loads(cli("show", "renewal", "--json").stdout)
    assert [s.get("id") or s.get("wait") for s in shown["agent"]["playbook"]] == [
        "forecast",
        "proposal",
        "7d",
        "negotiation_meeting",
    ]
    assert set(shown["templates"]) == {"renewal_email", "renewal_meeting"}
    text = cli("show", "renewal")
    assert (
        text.returncode == 0
        and "negotiation_meeting" in text.stdout
        and "renewal_email.j2" in text.stdout
    )
    missing = cli("show", "nobody", "--json")
    assert missing.returncode == 2 and "no agent 'nobody'" in json.loads(missing.stdout)["error"]


@pytest.mark.parametrize("template", sorted(FIVE - {"copilot"}))  # the Copilot's is no template
def test_new_copies_a_template_that_validates(tmp_path: Path, template: str) -> None:
    env, folder = new_agent(tmp_path, "mine", template)
    text = (folder / "mine.yaml").read_text()
    assert "name: mine\n" in text and f"name: {template}\n" not in text
    shipped = sorted(p.name for p in (REPO / "agents" / template).glob("*.j2"))
    assert sorted(p.name for p in (folder / "mine").glob("*.j2")) == shipped
    assert (folder / "agent.schema.json").read_text() == (
        REPO / "agents" / "agent.schema.json"
    ).read_text()
    proc = cli("validate", "--json", env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert [a["name"] for a in json.loads(proc.stdout)["agents"]] == ["mine"]


def test_new_refuses_to_overwrite(tmp_path: Path) -> None:
    env, folder = new_agent(tmp_path)
    (folder / "my_rescue.yaml").write_text((folder / "my_rescue.yaml").read_text() + "# mine\n")
    again = cli("new", "my_rescue", "--template", "renewal", "--json", env=env)
    assert again.returncode != 0 and "not overwritten" in json.loads(again.stdout)["error"]
    assert (folder / "my_rescue.yaml").read_text().endswith("# mine\n")
    assert not (folder / "my_rescue" / "renewal_email.j2").exists()
    for bad in (["Bad Name", "--template", "renewal"], ["other", "--template", "nope"]):
        proc = cli("new", *bad, "--json", env=env)
        assert proc.returncode != 0 and json.loads(proc.stdout)["ok"] is False
    assert sorted(p.name for p in folder.iterdir()) == [
        "agent.schema.json",
        "my_rescue",
        "my_rescue.yaml",
    ]


def test_new_edit_validate_preview_without_touching_python(
    tmp_path: Path, portfolio: Portfolio
) -> None:
    env, folder = new_agent(tmp_path)
    env = {**env, **portfolio.env}
    spec, template = folder / "my_rescue.yaml", folder / "my_rescue" / "rescue_email.j2"
    old_subject = "can we help you get more from the product?"
    assert old_subject in spec.read_text()
    spec.write_text(spec.read_text().replace(old_subject, "a quick word about your rollout"))
    template.write_text(
        template.read_text().replace(
            "Just reply with a time that works.", "Pick a slot: {{ dates.d3 }} or {{ dates.d7 }}."
        )
    )

    proc = cli("validate", "--json", env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert json.loads(proc.stdout)["agents"][0]["name"] == "my_rescue"

    proc = cli("preview", "my_rescue", "--account", portfolio.account, "--json", env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = json.loads(proc.stdout)
    assert (
        out["agent"] == "my_rescue"
        and out["account"]["id"] == portfolio.account
        and out["exit"] is None
    )
    email = next(a for a in out["actions"] if a["step"] == "rescue_email")
    assert (
        email["tool"] == "send_email" and email["option"] == "education_email" and email["cost"] > 0
    )
    assert email["args"]["subject"].endswith(": a quick word about your rollout")
    assert "Pick a slot: 20" in email["args"]["body"] and "{{" not in email["args"]["body"]
    assert email["args"]["to"].startswith("champion@")
    decision = email["decision"]
    assert decision["outcome"] in ("allow", "require_approval", "deny")
    assert (decision["outcome"] == "require_approval") == bool(decision["roles"])
    assert (decision["outcome"] == "deny") == bool(decision["deny"])
    assert {n["step"] for n in out["notes"]} >= {"rescue_email", "renewal_incentive"}
    assert out["next"]["wait_s"] == 5 * 86400 and out["sent"] is False

    text = cli("preview", "my_rescue", "--account", portfolio.account, env=env)
    assert text.returncode == 0, text.stderr
    assert "a quick word about your rollout" in text.stdout and "Pick a slot:" in text.stdout
    assert any(v in text.stdout for v in ("ALLOW", "REQUIRES APPROVAL", "DENY"))

    # Decided and logged, nothing reserved, sent or queued for a person.
    with Session(make_engine(portfolio.db_url)) as s:
        assert s.exec(select(ActionRecord)).all() == []
        assert s.exec(select(Approval)).all() == []
        assert s.exec(select(ReceivedMail)).all() == []
        logged = s.exec(
            select(PolicyDecisionRecord).where(PolicyDecisionRecord.agent == "my_rescue")
        ).all()
        assert {r.run_key for r in logged} >= {f"preview:my_rescue:{portfolio.account}:0"}


def test_preview_names_an_unknown_agent_or_account(tmp_path: Path, portfolio: Portfolio) -> None:
    env = {**new_agent(tmp_path)[0], **portfolio.env}
    proc = cli("preview", "nobody", "--account", portfolio.account, "--json", env=env)
    assert proc.returncode == 2 and "no agent 'nobody'" in json.loads(proc.stdout)["error"]
    proc = cli("preview", "my_rescue", "--account", "acc-nope", "--json", env=env)
    assert proc.returncode == 2 and "no account 'acc-nope'" in json.loads(proc.stdout)["error"]


@pytest.fixture(scope="module")
def made(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An agents folder with my_rescue, made by `agents new` from churn_rescue."""
    return new_agent(tmp_path_factory.mktemp("made"))[1]


WHEN = "    when: account.arr >= 50000.0 && account.p1_open == 0"
THE_CSM = "Your CSM {{ csm.name }} would like"
THE_ACCOUNT = "we noticed a few things on {{ account.name }}'s account"


@pytest.mark.parametrize(
    ("file", "old", "new", "field", "at"),
    [
        # A field the model refuses; a key it does not know.
        ("yaml", "priority: 100", "priority: high", "priority", "priority: high"),
        ("yaml", "exit:\n", "exits:\n", "exits", "exits:"),
        # CEL in a step's `when`: not CEL; a field no account has.
        (
            "yaml",
            WHEN,
            "    when: account.arr >= && 1",
            "playbook.1.when",
            "when: account.arr >= &&",
        ),
        ("yaml", WHEN, "    when: account.arr_usd >= 50000.0", "playbook.1.when", "arr_usd"),
        # An option that is neither a catalogue action nor a granted tool.
        (
            "yaml",
            "    do: education_email",
            "    do: education_emial",
            "playbook.0.do",
            "education_emial",
        ),
        # A template with a Jinja syntax error: the template's own file and line (an
        # unclosed block: the line that opens it).
        ("j2", THE_CSM, "Your CSM {{ csm.name } would like", "<template>", "Your CSM"),
        ("j2", THE_CSM, "{% if account.arr > 0 %}" + THE_CSM, "<template>", "{% if account.arr"),
        # A merge field no account has: the step that renders it.
        (
            "j2",
            THE_ACCOUNT,
            "we noticed a few things on {{ account.nmae }}'s account",
            "playbook.0",
            "- id: rescue_email",
        ),
        (
            "yaml",
            'subject: "{{ account.name }}',
            'subject: "{{ acount.name }}',
            "playbook.0",
            "- id: rescue_email",
        ),
    ],
)
def test_a_broken_copy_fails_with_its_file_and_line(
    tmp_path: Path, made: Path, file: str, old: str, new: str, field: str, at: str
) -> None:
    folder = tmp_path / "agents"
    shutil.copytree(made, folder)
    env = {"AUTOPILOT_AGENTS_DIR": str(folder)}
    spec, template = folder / "my_rescue.yaml", folder / "my_rescue" / "rescue_email.j2"
    broken = spec if file == "yaml" else template
    text = broken.read_text()
    assert old in text
    broken.write_text(text.replace(old, new, 1))
    where = template if field == "<template>" else spec
    line = line_of(where.read_text(), at)

    proc = cli("validate", env=env)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert proc.stderr.startswith(f"{where}:{line}: {field}: "), proc.stderr

    proc = cli("validate", "--json", env=env)
    assert proc.returncode == 1
    out = json.loads(proc.stdout)
    assert (out["ok"], out["path"], out["line"], out["field"]) == (False, str(where), line, field)
    if "nmae" in new or "acount" in new:
        assert ("nmae" if "nmae" in new else "acount") in out["error"]
    if field == "priority":  # the file alone: the same error
        one = cli("validate", str(spec), "--json", env=env)
        assert one.returncode == 1 and json.loads(one.stdout)["line"] == line


def test_a_limit_looser_than_the_policy_everywhere_fails_with_its_line(tmp_path: Path) -> None:
    """An agent's limits only tighten the policy: 30 % against segment caps of at most
    20 % could never apply, so validate says so (a tighter one passes)."""
    text = (REPO / "agents" / "churn_rescue.yaml").read_text()
    shutil.copytree(REPO / "agents" / "churn_rescue", tmp_path / "churn_rescue")
    loose = tmp_path / "churn_rescue.yaml"
    loose.write_text(text.replace("  max_discount_pct: 20", "  max_discount_pct: 30", 1))
    proc = cli("validate", str(loose))
    line = line_of(loose.read_text(), "max_discount_pct: 30")
    assert proc.returncode == 1
    assert f"{loose}:{line}: limits.max_discount_pct:" in proc.stdout + proc.stderr
    loose.write_text(text.replace("  max_discount_pct: 20", "  max_discount_pct: 12", 1))
    assert cli("validate", str(loose)).returncode == 0
