"""Account and contact imports: row-level errors with the field, custom fields checked
against the organisation's JSON schema, nothing half-imported."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest
from sqlmodel import Session, select

from autopilot.runtime.accounts.imports import ImportFailed, import_file, set_custom_schema
from autopilot.runtime.devstack.seed import seed_portfolio
from autopilot.runtime.store.accounts import Account, Contact
from autopilot.runtime.store.db import make_engine

HEADER = "id,name,segment,region,arr,seats_purchased,renewal_date,owner_csm,custom.industry,custom.employees\n"


@pytest.fixture
def db(tmp_path: Path):  # type: ignore[no-untyped-def]
    engine = make_engine(f"sqlite:///{tmp_path / 'i.db'}")
    seed_portfolio(engine, n=5, today=date(2026, 11, 24))
    set_custom_schema(
        engine,
        "demo",
        {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "industry": {"enum": ["retail", "health", "finance"]},
                "employees": {"type": "integer", "minimum": 1},
            },
        },
    )
    yield engine
    engine.dispose()


def test_good_csv_imports_with_custom_fields(db, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    f = tmp_path / "a.csv"
    f.write_text(
        HEADER + "new-1,New One,smb,eu,20000,25,2027-05-01,alice,retail,120\n"
        "new-2,New Two,enterprise,us,400000,600,2027-02-01,bob,,\n"
    )
    assert import_file(db, f, kind="accounts", org_id="demo") == 2
    with Session(db) as s:
        one = s.get(Account, "new-1")
        assert (
            one is not None
            and one.custom == {"industry": "retail", "employees": 120}
            and one.org_id == "demo"
        )


def test_bad_rows_are_all_reported_and_nothing_is_written(db, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    f = tmp_path / "a.csv"
    f.write_text(
        HEADER + "ok-1,Fine,smb,eu,20000,25,2027-05-01,alice,retail,10\n"
        "bad-1,Bad,smb,eu,-5,25,2027-05-01,alice,retail,10\n"
        "bad-2,Bad,galaxy,eu,100,25,2027-05-01,alice,mining,0\n"
        "ok-1,Dup,smb,eu,20000,25,2027-05-01,alice,retail,10\n"
    )
    with pytest.raises(ImportFailed) as info:
        import_file(db, f, kind="accounts", org_id="demo")
    found = {(e["row"], e["field"]) for e in info.value.errors}
    assert {
        (3, "arr"),
        (4, "segment"),
        (4, "custom.industry"),
        (4, "custom.employees"),
        (5, "id"),
    } <= found
    with Session(db) as s:
        assert s.get(Account, "ok-1") is None


def test_contacts_json_needs_known_accounts(db, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    f = tmp_path / "c.json"
    f.write_text(
        '[{"id": "c-1", "account_id": "acc-0001", "name": "Ana", "email": "ana@x.example", "role": "champion"},'
        ' {"id": "c-2", "account_id": "nope", "name": "Bo", "email": "bo@x.example", "role": "admin"},'
        ' {"id": "c-3", "account_id": "acc-0001", "name": "Cy", "email": "not-an-email", "role": "admin"}]'
    )
    with pytest.raises(ImportFailed) as info:
        import_file(db, f, kind="contacts", org_id="demo")
    assert {(e["row"], e["field"]) for e in info.value.errors} == {(2, "account_id"), (3, "email")}
    with Session(db) as s:
        assert s.exec(select(Contact).where(Contact.id == "c-1")).first() is None
    with pytest.raises(ImportFailed):  # another organisation's account is unknown
        import_file(db, f, kind="contacts", org_id="globex")


def test_a_spreadsheet_bom_is_accepted(db, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    f = tmp_path / "a.csv"
    f.write_bytes(
        ("\ufeff" + HEADER + "bom-1,Bom One,smb,eu,20000,25,2027-05-01,alice,retail,12\n").encode()
    )
    assert import_file(db, f, kind="accounts", org_id="demo") == 1


def test_values_that_would_break_later_are_refused_at_import(db, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    f = tmp_path / "a.csv"
    f.write_text(
        HEADER + "inf-1,Inf,smb,eu,inf,25,2027-05-01,alice,retail,1\n"
        'crlf-1,"Two\r\nLines",smb,eu,100,25,2027-05-01,alice,retail,1\n'
    )
    with pytest.raises(ImportFailed) as info:
        import_file(db, f, kind="accounts", org_id="demo")
    assert {(e["row"], e["field"]) for e in info.value.errors} >= {(2, "arr"), (3, "name")}
    c = tmp_path / "c.json"
    c.write_text(
        '[{"id": "c-9", "account_id": "acc-0001", "name": "Ana", "email": "ana@x.example",'
        ' "role": "champion", "timezone": "Mars/Olympus"}]'
    )
    with pytest.raises(ImportFailed) as info:
        import_file(db, c, kind="contacts", org_id="demo")
    assert {(e["row"], e["field"]) for e in info.value.errors} == {(1, "timezone")}
