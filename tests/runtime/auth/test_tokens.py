"""API tokens expire, can be revoked, and record when they were last used (at most once a
minute per token)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from hashlib import sha256
from pathlib import Path

import pytest
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from autopilot.runtime.auth.users import (
    DEFAULT_TOKEN_DAYS,
    AuthError,
    add_user,
    from_token,
    issue_token,
    list_tokens,
    revoke_tokens,
    token_id_of,
)
from autopilot.runtime.store.db import make_engine, transaction
from autopilot.runtime.store.users import ApiToken, User

T0 = datetime(2025, 3, 1, 9, 0, tzinfo=UTC)


@pytest.fixture
def db(tmp_path: Path) -> Engine:
    db = make_engine(f"sqlite:///{tmp_path / 'auth.db'}")
    add_user(db, user_id="ann", org_id="acme", email="ann@acme.example", name="Ann", roles=["csm"])
    add_user(db, user_id="bob", org_id="acme", email="bob@acme.example", name="Bob", roles=["csm"])
    return db


def who(db: Engine, token: str, at: datetime) -> str | None:
    with Session(db) as session:
        found = from_token(session, token, now=at)
    return found.user_id if found else None


def last_used(db: Engine) -> datetime | None:
    with Session(db) as session:
        value = session.exec(select(ApiToken)).one().last_used_at
    return value.replace(tzinfo=UTC) if value is not None and value.tzinfo is None else value


def test_token_use_records_last_used_at_at_most_once_a_minute(db: Engine) -> None:
    token = issue_token(db, user_id="ann", now=T0)
    assert last_used(db) is None

    for at, expected in (
        (T0, T0),
        (T0 + timedelta(seconds=30), T0),
        (T0 + timedelta(seconds=61), T0 + timedelta(seconds=61)),
    ):
        assert who(db, token, at) == "ann"
        assert last_used(db) == expected


def test_an_unknown_token_records_nothing(db: Engine) -> None:
    issue_token(db, user_id="ann", now=T0)
    assert who(db, "cap_not-a-token", T0) is None
    assert last_used(db) is None


def test_the_token_of_an_inactive_user_is_refused_also_on_a_bare_connection(db: Engine) -> None:
    token = issue_token(db, user_id="ann", now=T0)
    with db.connect() as conn:  # the API's check runs on a connection, not a session
        found = from_token(conn, token, now=T0)
    assert found is not None and found.roles == frozenset({"csm"}) and last_used(db) == T0
    with transaction(db) as session:
        user = session.get(User, "ann")
        assert user is not None
        user.active = False
        session.add(user)
    assert who(db, token, T0 + timedelta(minutes=5)) is None


def test_a_token_is_refused_from_the_moment_it_expires(db: Engine) -> None:
    week = issue_token(db, user_id="ann", days=7, now=T0)
    default = issue_token(db, user_id="bob", now=T0)
    expiry = T0 + timedelta(days=7)
    assert who(db, week, expiry - timedelta(seconds=1)) == "ann"
    assert who(db, week, expiry) is None
    assert who(db, default, T0 + timedelta(days=DEFAULT_TOKEN_DAYS, seconds=-1)) == "bob"
    assert who(db, default, T0 + timedelta(days=DEFAULT_TOKEN_DAYS)) is None
    (info,) = list_tokens(db, user_id="ann")
    assert info.expires_at == expiry and info.state(expiry) == "expired"


@pytest.mark.parametrize("days", [0, -1, 3651])
def test_a_lifetime_out_of_range_issues_nothing(db: Engine, days: int) -> None:
    with pytest.raises(AuthError):
        issue_token(db, user_id="ann", days=days, now=T0)
    assert list_tokens(db, user_id="ann") == []


def test_a_revoked_token_is_refused_and_the_users_other_tokens_still_work(db: Engine) -> None:
    first = issue_token(db, user_id="ann", label="ci", now=T0)
    second = issue_token(db, user_id="ann", label="laptop", now=T0)
    bobs = issue_token(db, user_id="bob", now=T0)
    later = T0 + timedelta(hours=1)

    assert revoke_tokens(db, user_id="ann", token_id=token_id_of(first), now=later) == [
        token_id_of(first)
    ]
    assert who(db, first, later) is None
    assert who(db, second, later) == "ann"
    states = {t.label: t.state(later) for t in list_tokens(db, user_id="ann")}
    assert states == {"ci": "revoked", "laptop": "active"}

    assert revoke_tokens(db, user_id="ann", now=later) == [token_id_of(second)]  # all: one was left
    assert who(db, second, later) is None
    assert who(db, bobs, later) == "bob"  # another user's tokens are not touched


@pytest.mark.parametrize("token_id", ["0123456789ab", "not-an-id", "%", "____________"])
def test_revoking_a_token_the_user_does_not_have_is_an_error_and_revokes_nothing(
    db: Engine, token_id: str
) -> None:
    anns = issue_token(db, user_id="ann", now=T0)
    bobs = issue_token(db, user_id="bob", now=T0)
    with pytest.raises(AuthError):
        revoke_tokens(db, user_id="ann", token_id=token_id, now=T0)
    with pytest.raises(AuthError):  # bob's token is not ann's to revoke
        revoke_tokens(db, user_id="ann", token_id=token_id_of(bobs), now=T0)
    assert who(db, anns, T0) == "ann" and who(db, bobs, T0) == "bob"


def test_a_token_issued_before_expiry_existed_gets_the_default_lifetime_and_can_be_revoked(
    db: Engine,
) -> None:
    # A database from an earlier release: an apitoken row, no validity row beside it.
    old, young = "cap_issued-long-ago", "cap_issued-last-week"
    with transaction(db) as session:
        for token, created in (
            (old, T0 - timedelta(days=DEFAULT_TOKEN_DAYS)),
            (young, T0 - timedelta(days=7)),
        ):
            session.add(
                ApiToken(
                    token_hash=sha256(token.encode()).hexdigest(), user_id="ann", created_at=created
                )
            )
    assert who(db, old, T0) is None
    assert who(db, young, T0) == "ann"
    assert revoke_tokens(db, user_id="ann", token_id=token_id_of(young), now=T0) == [
        token_id_of(young)
    ]
    assert who(db, young, T0) is None
