"""`autopilot policy …` as a user runs it."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from autopilot.runtime.devstack.scenarios import drop_events
from tests.conftest import REPO, Stack
from tests.runtime.test_cli import arun_cli, run_cli


def test_policy_test_passes_and_fails_loudly(tmp_path: Path) -> None:
    proc = run_cli("policy", "test", "--json")
    out = json.loads(proc.stdout)
    assert proc.returncode == 0 and out["failed"] == 0 and out["passed"] >= 60
    bundle = tmp_path / "policies"
    shutil.copytree(REPO / "policies", bundle)
    data = bundle / "autopilot" / "discount" / "data.json"
    data.write_text(data.read_text().replace('"cap_pct": 10', '"cap_pct": 11'))
    proc = run_cli("policy", "test", "--bundle", str(bundle), "--json")
    out = json.loads(proc.stdout)
    assert proc.returncode == 1 and out["failed"] >= 1
    assert any("cap" in f["case"] for f in out["failures"])


def test_policy_check_names_the_file_and_line(tmp_path: Path) -> None:
    bundle = tmp_path / "policies"
    shutil.copytree(REPO / "policies", bundle)
    (bundle / "autopilot" / "budget" / "policy.rego").write_text("package autopilot.budget\n\nimport rego.v1\n\ndeny contains {{\n")
    proc = run_cli("policy", "check", "--bundle", str(bundle), "--json")
    out = json.loads(proc.stdout)
    assert proc.returncode == 1 and "budget/policy.rego" in out["error"] and "line" in out["error"]
    assert run_cli("policy", "check").returncode == 0


def test_policy_eval_shows_the_rules_that_fired(tmp_path: Path) -> None:
    import yaml

    payload = yaml.safe_load((REPO / "policies" / "cases_base.yaml").read_text())["offer"]
    payload["action"]["discount_pct"] = 30
    path = tmp_path / "input.json"
    path.write_text(json.dumps(payload))
    out = json.loads(run_cli("policy", "eval", "--input", str(path), "--json").stdout)
    assert out["decision"]["allow"] is False
    assert any(line.startswith("deny discount.above_cap") for line in out["fired"])


def test_input_schema_file_is_current() -> None:
    generated = json.loads(run_cli("policy", "schema").stdout)
    assert json.loads((REPO / "policies" / "input.schema.json").read_text()) == generated


async def test_whatif_reports_decisions_a_tighter_cap_would_change(stack: Stack, tmp_path: Path) -> None:
    account, = stack.pick("enterprise", min_arr=250_000, max_arr=1_000_000)
    await stack.post_events(drop_events(stack.db, account))
    email, = await stack.pending_for(account)
    await stack.decide(email, "approve")
    offer, = await stack.pending_for(account)  # the 10% offer was gated: require_approval
    tight = tmp_path / "tight"
    shutil.copytree(REPO / "policies", tight)
    data = tight / "autopilot" / "discount" / "data.json"
    data.write_text(data.read_text().replace('"enterprise": {"cap_pct": 20', '"enterprise": {"cap_pct": 8'))
    env = {"DATABASE_URL": stack.settings.db_url}
    proc = await arun_cli("policy", "whatif", "--bundle", str(tight), "--since", "3650d", "--json", env=env)
    report = json.loads(proc.stdout)
    assert report["evaluated"] == 2 and report["changed"] == 1
    assert report["transitions"] == {"require_approval->deny": 1, "require_approval->require_approval": 1}
    example, = report["examples"]["require_approval->deny"]
    assert example["codes_after"] == ["discount.above_cap"] and example["account_id"] == account
    assert offer["id"]
    log = await arun_cli("policy", "log", "--account", account, "--json", env=env)
    assert len(json.loads(log.stdout)["decisions"]) == 2
    r = await stack.http.get("/decisions", params={"account_id": account, "outcome": "require_approval"},
                             headers=stack.headers("maria"))
    assert r.status_code == 200 and len(r.json()) == 2
    r = await stack.http.get("/decisions", params={"code": "discount.above_cap"}, headers=stack.headers("maria"))
    assert r.json() == []
