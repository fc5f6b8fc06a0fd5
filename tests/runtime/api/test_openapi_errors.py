"""The 4xx answers a client can meet are in the OpenAPI schema, with the one error shape:
checked by sending them (401 without, or with a dead, token; 403 for a role that may not)
and by schemathesis validating each answer against the schema."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from datetime import UTC, datetime, timedelta

from hypothesis import given
from schemathesis import Case

from autopilot.runtime.approvals.service import InboxError
from autopilot.runtime.auth.users import issue_token, revoke_tokens, token_id_of
from tests.conftest import Stack
from tests.runtime.api.conftest import CHECKS, Served, bounded


def send_all(
    served: Served, headers: dict[str, str], labels: set[str] | None = None, examples: int = 2
) -> dict[str, set[int]]:
    """Each operation (or those in `labels`) a few valid requests; the statuses answered.
    Raises on the first answer that is not as documented."""
    seen: dict[str, set[int]] = defaultdict(set)
    for result in served.schema.get_all_operations():
        operation = result.ok()
        if labels is not None and operation.label not in labels:
            continue

        @bounded(examples)
        @given(case=operation.as_strategy())
        def check(case: Case) -> None:
            response = case.call(base_url=served.url, headers=headers)
            seen[case.operation.label].add(response.status_code)
            case.validate_response(response, checks=CHECKS)

        check()
    return seen


async def test_without_a_live_token_every_operation_but_health_is_a_documented_401(
    stack: Stack, served: Served
) -> None:
    expired = issue_token(
        stack.db, user_id="maria", days=1, now=datetime.now(UTC) - timedelta(days=2)
    )
    revoked = issue_token(stack.db, user_id="maria")
    revoke_tokens(stack.db, user_id="maria", token_id=token_id_of(revoked))
    for headers in (
        {},
        {"Authorization": f"Bearer {expired}"},
        {"Authorization": f"Bearer {revoked}"},
    ):
        seen = await asyncio.to_thread(send_all, served, headers)
        assert seen.pop("GET /health") == {200}
        assert len(seen) >= 12 and all(codes == {401} for codes in seen.values()), seen
    # ... and tells the client how to authenticate (the header is checked as sent, too).
    for path, methods in served.schema.raw_schema["paths"].items():
        for operation in methods.values():
            if path != "/health":
                assert "WWW-Authenticate" in operation["responses"]["401"]["headers"], path


async def test_a_role_that_may_not_is_a_documented_403(stack: Stack, served: Served) -> None:
    auditor = await asyncio.to_thread(
        send_all,
        served,
        stack.headers("audrey"),
        {
            "POST /events",
            "POST /approvals/{approval_id}/decision",
            "POST /approvals/{approval_id}/edit",
            "POST /approvals/{approval_id}/reassign",
        },
        10,
    )
    csm = await asyncio.to_thread(send_all, served, stack.headers("alice"), {"GET /metrics/cbr"})
    # A valid-looking body the model's own rules refuse is a 422 first: each still met a 403.
    assert len(auditor) == 4 and all(403 in codes for codes in auditor.values()), auditor
    assert csm == {"GET /metrics/cbr": {403}}


def test_the_inbox_routes_document_every_status_the_inbox_raises(served: Served) -> None:
    raised = {error.status_code for error in InboxError.__subclasses__()}
    for path, method in (
        ("/approvals/{approval_id}/decision", "post"),
        ("/approvals/{approval_id}/edit", "post"),
        ("/approvals/{approval_id}/reassign", "post"),
    ):
        documented = served.schema.raw_schema["paths"][path][method]["responses"]
        assert raised <= {int(code) for code in documented if code.isdigit()}, path
        for code in raised:
            ref = documented[str(code)]["content"]["application/json"]["schema"]["$ref"]
            assert ref.endswith("/ErrorOut")
