"""Policy changes apply to every new run, or to none: a bad edit is refused with its
file and field and the last good bundle stays; the watcher survives anything; runs
started through the API pin the bundle in force when they start; an oversized decision
is a deny."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from autopilot.runtime.devstack.scenarios import drop_events
from autopilot.runtime.policy.engine import UNAVAILABLE, PolicyLoadError, decide_raw
from autopilot.runtime.policy.rego import RegoEngine
from autopilot.runtime.services import PolicyStatus, watch_policies
from tests.conftest import REPO, Stack
from tests.runtime.test_cli import run_cli

BASES = yaml.safe_load((REPO / "policies" / "cases_base.yaml").read_text())


def _bundle(tmp_path: Path) -> Path:
    folder = tmp_path / "policies"
    shutil.copytree(REPO / "policies", folder)
    return folder


def _set(folder: Path, package: str, edit: Any) -> None:
    path = folder / "autopilot" / package / "data.json"
    doc = json.loads(path.read_text())
    edit(doc["limits"])
    path.write_text(json.dumps(doc))


@pytest.mark.parametrize(
    ("package", "edit", "field"),
    [
        ("budget", lambda d: d["segments"]["smb"].update(account_quarter_pct_of_arr="0"),
         "limits.segments.smb.account_quarter_pct_of_arr"),
        ("contact", lambda d: d.update(high_touch_per_quarter=[2]), "limits.high_touch_per_quarter"),
        ("discount", lambda d: d["segments"].update(smb=[10, 5]), "limits.segments.smb"),
        ("approval", lambda d: d.pop("csm_arr"), "limits.csm_arr"),
        ("discount", lambda d: d["segments"]["smb"].update(cap_pct=float("inf")), "limits.segments.smb.cap_pct"),
        ("discount", lambda d: d["segments"].pop("smb"), "limits.segments"),
    ],
)
def test_a_bad_limit_is_refused_and_the_last_good_bundle_stays(
    tmp_path: Path, package: str, edit: Any, field: str
) -> None:
    folder = _bundle(tmp_path)
    engine = RegoEngine(folder)
    good = engine.bundle_hash
    _set(folder, package, edit)
    with pytest.raises(PolicyLoadError) as err:
        engine.reload()
    assert f"autopilot/{package}/data.json: {field}:" in str(err.value)
    assert engine.bundle_hash == good and decide_raw(engine, BASES["email"]).outcome != "deny"
    proc = run_cli("policy", "check", "--bundle", str(folder), "--json")
    assert proc.returncode == 1 and f"{package}/data.json" in json.loads(proc.stdout)["error"]


def test_policy_check_runs_the_cases(tmp_path: Path) -> None:
    folder = _bundle(tmp_path)
    _set(folder, "discount", lambda d: d["segments"]["smb"].update(cap_pct=11))  # valid, but a case expects 10
    proc = run_cli("policy", "check", "--bundle", str(folder), "--json")
    assert proc.returncode == 1 and "case" in json.loads(proc.stdout)["error"]


def _wait(predicate: Any, what: str) -> None:
    deadline = time.monotonic() + 10
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def test_the_watcher_survives_a_bad_edit_and_loads_the_next_good_one(tmp_path: Path) -> None:
    folder = _bundle(tmp_path)
    engine = RegoEngine(folder)
    status = PolicyStatus(bundle_hash=engine.bundle_hash)
    good = engine.bundle_hash
    stop = watch_policies(engine, status, interval_s=0.02)
    try:
        (folder / "autopilot" / "contact" / "data.json").write_text("[1, 2, 3]")
        _wait(lambda: status.refused is not None, "the refusal")
        assert "contact/data.json" in (status.refused or "") and engine.bundle_hash == good
        (folder / "autopilot" / "contact" / "data.json").write_text(
            (REPO / "policies" / "autopilot" / "contact" / "data.json").read_text())
        _set(folder, "budget", lambda d: d["segments"]["smb"].update(account_quarter_pct_of_arr=0))
        _wait(lambda: status.bundle_hash != good, "the good edit")
        assert status.refused is None and engine.bundle_hash == status.bundle_hash
    finally:
        stop()


def test_an_oversized_decision_is_a_deny(tmp_path: Path) -> None:
    folder = tmp_path / "policies" / "autopilot"
    folder.mkdir(parents=True)
    (folder / "policy.rego").write_text(
        'package autopilot\n\ndecision := {"allow": true, "require_approval": false, "deny": [], "approval": [],'
        ' "obligations": [{"type": "pad", "n": numbers.range(1, 20000)}]}\n')
    decision = decide_raw(RegoEngine(folder.parent), BASES["email"])
    assert decision.outcome == "deny" and [v.code for v in decision.deny] == [UNAVAILABLE]


async def test_an_api_started_run_pins_the_bundle_in_force_after_a_hot_reload(
    stack_factory: Any, tmp_path: Path
) -> None:
    folder = _bundle(tmp_path)
    engine = RegoEngine(folder)
    async with stack_factory(policy=engine) as stack:
        account, = stack.pick("smb", max_arr=50_000)
        # The SMB budget is cut to nothing after the API started.
        _set(folder, "budget", lambda d: d["segments"]["smb"].update(account_quarter_pct_of_arr=0))
        engine.reload()
        wf_id, = await stack.post_events(drop_events(stack.db, account))
        result = await stack.run_result(wf_id)
        assert [o.status for o in result.outcomes] == ["denied"]
        assert "budget.account_exceeded" in result.outcomes[0].codes
        assert stack.mails() == []


async def test_only_roles_that_feed_data_may_post_events(stack: Stack) -> None:
    from autopilot.runtime.devstack.users import demo_user_id

    account, = stack.pick("smb", max_arr=50_000)
    owner = stack.owner(account)
    event = {"account_id": account, "type": "login"}
    for user in ("vera", "fiona", "audrey"):  # vp may; finance and auditor may not
        r = await stack.http.post("/events", json=event, headers=stack.headers(user))
        assert r.status_code == (202 if user == "vera" else 403), (user, r.text)
    other = next(c for c in ("alice", "bob", "chen", "dana", "emeka") if demo_user_id("demo", c) != owner)
    r = await stack.http.post("/events", json=event, headers=stack.headers(other))
    assert r.status_code == 422  # outside the book: the account is unknown to them
    r = await stack.http.post("/events", json=event, headers=stack.headers(owner))
    assert r.status_code == 202


def test_the_shipped_data_schema_is_generated_from_the_models() -> None:
    from autopilot.runtime.policy.schema import json_schema

    shipped = json.loads((REPO / "policies" / "data.schema.json").read_text())
    assert shipped == json.loads(json.dumps(json_schema())), "regenerate policies/data.schema.json"
