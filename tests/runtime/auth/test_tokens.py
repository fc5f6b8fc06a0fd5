"""API tokens record when they were last used, at most once a minute per token."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from autopilot.runtime.auth.users import add_user, from_token, issue_token
from autopilot.runtime.store.db import make_engine
from autopilot.runtime.store.users import ApiToken

T0 = datetime(2025, 3, 1, 9, 0, tzinfo=UTC)


def last_used(db: Engine) -> datetime | None:
    with Session(db) as session:
        value = session.exec(select(ApiToken)).one().last_used_at
    return value.replace(tzinfo=UTC) if value is not None and value.tzinfo is None else value


def test_token_use_records_last_used_at_at_most_once_a_minute(tmp_path: Path) -> None:
    db = make_engine(f"sqlite:///{tmp_path / 'auth.db'}")
    add_user(db, user_id="ann", org_id="acme", email="ann@acme.example", name="Ann", roles=["csm"])
    token = issue_token(db, user_id="ann")
    assert last_used(db) is None

    for at, expected in ((T0, T0), (T0 + timedelta(seconds=30), T0),
                         (T0 + timedelta(seconds=61), T0 + timedelta(seconds=61))):
        with Session(db) as session:
            who = from_token(session, token, now=at)
        assert who is not None and who.user_id == "ann"
        assert last_used(db) == expected


def test_an_unknown_token_records_nothing(tmp_path: Path) -> None:
    db = make_engine(f"sqlite:///{tmp_path / 'auth.db'}")
    add_user(db, user_id="ann", org_id="acme", email="ann@acme.example", name="Ann", roles=["csm"])
    issue_token(db, user_id="ann")
    with Session(db) as session:
        assert from_token(session, "cap_not-a-token", now=T0) is None
    assert last_used(db) is None
