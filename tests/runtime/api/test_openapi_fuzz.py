"""The OpenAPI schema is the API's contract. Schemathesis sends every operation a
bounded, seeded set of generated requests, valid and invalid, as a manager, to the real
app on loopback (over the test stack: Temporal, SQLite, the seeded portfolio). Every
answer must be a status the schema documents, with a body of the documented shape, and
none a server error."""

from __future__ import annotations

import asyncio
from collections import Counter
from dataclasses import dataclass, field

from hypothesis import given
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from schemathesis import Case, GenerationMode
from schemathesis.core.failures import FailureGroup
from sqlmodel import Session, col, select

from autopilot.runtime.store.accounts import Account
from tests.conftest import Stack
from tests.runtime.api.conftest import CHECKS, Served, bounded

EXAMPLES = 25  # per operation and mode (valid, invalid): some 700 requests in all
# Few generated events pass the model's own rules (a type's required field, years
# 2000-2100): more of them, to reach the fold, the scoring and the triggers.
MORE_EXAMPLES = {"POST /events": 100}


@dataclass
class Tally:
    requests: int = 0
    statuses: Counter[int] = field(default_factory=Counter)
    failures: list[str] = field(default_factory=list)


def on_real_accounts(
    cases: st.SearchStrategy[Case], accounts: list[str]
) -> st.SearchStrategy[Case]:
    """Half the cases name a seeded account wherever they name one, so that requests get
    past "no such account" into the fold, the scoring and the triggers."""

    def put(case: Case, account: str | None) -> Case:
        if account is not None:
            for where in (case.path_parameters, case.query, case.body):
                if isinstance(where, dict) and isinstance(where.get("account_id"), str):
                    where["account_id"] = account
        return case

    return st.builds(put, cases, st.none() | st.sampled_from(accounts))


def fuzz(served: Served, headers: dict[str, str], accounts: list[str]) -> tuple[int, Tally]:
    tally = Tally()
    operations = [result.ok() for result in served.schema.get_all_operations()]
    for operation in operations:
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):

            @bounded(MORE_EXAMPLES.get(operation.label, EXAMPLES))
            @given(case=on_real_accounts(operation.as_strategy(generation_mode=mode), accounts))
            def check(case: Case) -> None:
                response = case.call(base_url=served.url, headers=headers)
                tally.requests += 1
                tally.statuses[response.status_code] += 1
                case.validate_response(response, checks=CHECKS)

            try:
                check()
            except Unsatisfiable:
                pass  # no invalid request exists (one string in the path, or no input at all)
            except (AssertionError, FailureGroup) as err:  # one report for every operation
                tally.failures.append(f"{operation.label} [{mode.value}]: {err}")
    return len(operations), tally


async def test_every_operation_answers_only_documented_statuses_and_shapes(
    stack: Stack, served: Served
) -> None:
    with Session(stack.db) as session:
        accounts = list(session.exec(select(Account.id).order_by(col(Account.id)).limit(5)))
    manager = stack.headers("maria")  # every operation is open to a manager
    operations, tally = await asyncio.to_thread(fuzz, served, manager, accounts)
    print(f"schemathesis: {operations} operations, {tally.requests} requests, {tally.statuses}")
    assert not tally.failures, "\n\n".join(tally.failures)
    assert operations >= 13 and tally.requests >= operations * EXAMPLES
