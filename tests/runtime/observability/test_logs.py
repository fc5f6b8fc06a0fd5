"""JSON logs: every line one object, with the run's workflow id, account and organisation."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest

from autopilot.runtime.devstack.scenarios import drop_events
from autopilot.runtime.observability import logs
from tests.conftest import Stack, make_settings, wait_for


@pytest.fixture
def json_lines(tmp_path: object) -> Iterator[io.StringIO]:
    stream = io.StringIO()
    handler = logs.configure(make_settings(tmp_path, log_format="json"), stream=stream)  # type: ignore[arg-type]
    nodes = logging.getLogger("autopilot.runtime.observability.nodes")
    level = nodes.level
    nodes.setLevel(logging.DEBUG)  # the nodes' "finished" lines
    yield stream
    nodes.setLevel(level)
    logging.getLogger().removeHandler(handler)


def parsed(stream: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in stream.getvalue().splitlines() if line.strip()]


async def test_json_log_lines_carry_the_runs_workflow_account_and_org(
    stack: Stack, json_lines: io.StringIO
) -> None:
    (account,) = stack.pick("smb", max_arr=50_000)
    (wf_id,) = await stack.post_events(drop_events(stack.db, account))
    await stack.run_result(wf_id)
    org = stack.account(account).org_id
    lines = parsed(json_lines)  # every line parses: the whole stream is JSON
    assert all({"workflow_id", "account", "org", "level", "message"} <= set(line) for line in lines)
    nodes = wait_for(
        lambda: [ln for ln in parsed(json_lines) if ln["message"] == "node.record finished"],
        what="the record node's line",
    )
    (record,) = await nodes
    assert (record["workflow_id"], record["account"], record["org"]) == (wf_id, account, org)
    assert record["agent"] == "churn_rescue"


def test_a_line_outside_any_run_has_the_keys_empty(json_lines: io.StringIO) -> None:
    logging.getLogger("autopilot.test").warning("plain", extra={"n": 1})
    (line,) = [ln for ln in parsed(json_lines) if ln["message"] == "plain"]
    assert (line["workflow_id"], line["account"], line["org"], line["n"]) == (None, None, None, 1)
    with logs.bound(workflow_id="wf", account="acc", org="org"):
        logging.getLogger("autopilot.test").warning("bound")
    (line,) = [ln for ln in parsed(json_lines) if ln["message"] == "bound"]
    assert (line["workflow_id"], line["account"], line["org"]) == ("wf", "acc", "org")


def test_the_configured_logs_carry_no_email_address(json_lines: io.StringIO) -> None:
    logging.getLogger("autopilot.test").warning(
        "mail to %s refused", "dana.champion@hooli.example", extra={"recipient": "x@y.example"}
    )
    (line,) = [r for r in parsed(json_lines) if r.get("logger") == "autopilot.test" or "refused" in str(r)]
    assert "hooli.example" not in json.dumps(line) and "y.example" not in json.dumps(line)
    assert "refused" in json.dumps(line)
