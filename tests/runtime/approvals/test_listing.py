"""The inbox list read as rows (`approvals/listing.py`): the JSON the API sends is the
list the web page and the CLI read, the role you would vote for is worked out for each
item (its own deciders and votes, though most of a page shares them), and a sorted list
pages without repeats."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest
from sqlalchemy.engine import Engine

from autopilot.runtime.approvals.access import Principal
from autopilot.runtime.approvals.listing import Filters, page
from autopilot.runtime.approvals.models import ApprovalPublic
from autopilot.runtime.store.approvals import Approval, ApprovalVote
from autopilot.runtime.store.db import make_engine, transaction

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)  # no microseconds: orjson then writes none
PAIR = ["csm", "manager"]
MANAGER = Principal("maria", "acme", frozenset({"manager"}))
FINANCE = Principal("fiona", "acme", frozenset({"finance"}))
ALICE = Principal("alice", "acme", frozenset({"csm"}))


def _item(
    n: int, *, deciders: dict[str, list[str]], status: str = "pending", value: float = 1.0
) -> Approval:
    action = {"tool": "send_offer", "args": {"to": f"c{n}@example.com"}, "discount_pct": 10}
    return Approval(
        id=f"apr_{n}",
        org_id="acme",
        workflow_id=f"wf{n}",
        run_key=f"k{n}",
        agent="churn_rescue",
        account_id="acc-1",
        segment="smb",
        tool="send_offer",
        action=action,
        payload_hash="h" * 64,
        value=value,
        risk=0.5,
        roles=PAIR,
        deciders=deciders,
        reasons=["over the limit"],
        status=status,
        assigned_to="alice",
        created_at=T0 + timedelta(minutes=n, microseconds=n * 7),
        due_at=T0 + timedelta(hours=72),
    )


@pytest.fixture
def db(database_url: str) -> Iterator[Engine]:
    db = make_engine(database_url)
    plain = {"csm": ["csm"], "manager": ["manager"]}
    escalated = {"csm": ["csm"], "manager": ["manager", "finance"]}  # its SLA passed
    with transaction(db) as session:
        session.add(_item(0, deciders=plain, value=30))
        session.add(_item(1, deciders=escalated, value=10))
        session.add(_item(2, deciders=plain, value=50))
        session.add(_item(3, deciders=plain, status="approved", value=20))
        session.add(_item(4, deciders=plain, value=40))
    with transaction(db) as session:  # alice has cast the CSM vote on item 2
        session.add(
            ApprovalVote(approval_id="apr_2", role="csm", verdict="approve", actor="alice", at=T0)
        )
    yield db
    db.dispose()


def _page(db: Engine, p: Principal, *, raw_json: bool, **filters: Any) -> list[dict[str, Any]]:
    with db.connect() as conn:
        return page(conn, p, Filters(**filters), raw_json=raw_json)


def test_the_json_page_is_the_decoded_page(db: Engine) -> None:
    sent = orjson.loads(orjson.dumps(_page(db, MANAGER, raw_json=True, status=None)))
    read = _page(db, MANAGER, raw_json=False, status=None)
    assert [i["id"] for i in sent] == [f"apr_{n}" for n in range(5)]
    for json_item, item in zip(sent, read, strict=True):
        assert ApprovalPublic.model_validate(json_item) == ApprovalPublic.model_validate(item)
        # Datetimes read as stored (UTC) and written as orjson writes them.
        assert item["created_at"] == T0 + timedelta(
            minutes=int(item["id"][4:]), microseconds=int(item["id"][4:]) * 7
        )
        for key in ("created_at", "due_at"):
            assert json_item[key] == orjson.loads(orjson.dumps(item[key])), key
    voted = next(i for i in sent if i["id"] == "apr_2")
    assert voted["votes"] == [
        {
            "role": "csm",
            "verdict": "approve",
            "actor": "alice",
            "reason": "",
            "at": orjson.loads(orjson.dumps(T0)),
        }
    ]


def test_the_role_to_cast_follows_each_items_deciders_and_votes(db: Engine) -> None:
    def can(p: Principal) -> dict[str, str | None]:
        return {i["id"]: i["can_decide_as"] for i in _page(db, p, raw_json=True, status=None)}

    # The same roles everywhere; item 1's manager vote was escalated to finance; item 2 has
    # alice's CSM vote; item 3 is decided.
    assert can(MANAGER) == {
        "apr_0": "manager",
        "apr_1": "manager",
        "apr_2": "manager",
        "apr_3": None,
        "apr_4": "manager",
    }
    assert can(FINANCE) == {
        "apr_0": None,
        "apr_1": "manager",
        "apr_2": None,
        "apr_3": None,
        "apr_4": None,
    }
    assert can(ALICE) == {
        "apr_0": "csm",
        "apr_1": "csm",
        "apr_2": None,
        "apr_3": None,
        "apr_4": "csm",
    }


def test_costliest_first_pages_without_repeats(db: Engine) -> None:
    pages = [_page(db, MANAGER, raw_json=True, sort="value", limit=2, offset=o) for o in (0, 2, 4)]
    assert [[i["id"] for i in p] for p in pages] == [["apr_2", "apr_4"], ["apr_0", "apr_1"], []]
