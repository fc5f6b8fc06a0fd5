"""Sign-in under attack: repeated failures lock the email out with back-off (even the
right password waits), an unknown email costs the same hash check as a known one, the
session cookie is Secure over HTTPS, and pages carry CSP and frame options."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy.engine import Engine

from autopilot.runtime.auth import users as auth
from autopilot.runtime.auth.users import AuthError, LockedOut, add_user, hash_password, login
from autopilot.runtime.store.db import make_engine, transaction
from autopilot.runtime.store.users import LoginThrottle, User
from tests.conftest import Stack

EMAIL = "ann@acme.example"


@pytest.fixture
def db(tmp_path: Path) -> Engine:
    engine = make_engine(f"sqlite:///{tmp_path / 'auth.db'}")
    add_user(engine, user_id="ann", org_id="acme", email=EMAIL, name="Ann", roles=["csm"])
    with transaction(engine) as session:
        user = session.get(User, "ann")
        assert user is not None
        user.password_hash = hash_password("right")
        session.add(user)
    return engine


def test_repeated_failures_lock_the_email_out_even_for_the_right_password(db: Engine) -> None:
    for _ in range(auth.FREE_FAILURES - 1):
        with pytest.raises(AuthError):
            login(db, email=EMAIL, password="wrong", hours=1)
    login(db, email=EMAIL, password="right", hours=1)  # under the limit: a success resets the count
    for _ in range(auth.FREE_FAILURES):
        with pytest.raises(AuthError):
            login(db, email=EMAIL, password="wrong", hours=1)
    with pytest.raises(LockedOut):
        login(db, email=EMAIL, password="right", hours=1)
    with transaction(db) as session:  # the lockout ends: the right password works again
        row = session.get(LoginThrottle, EMAIL)
        assert row is not None and row.failures == auth.FREE_FAILURES
        row.locked_until = None
        session.add(row)
    login(db, email=EMAIL, password="right", hours=1)


def test_an_unknown_email_costs_the_same_hash_check_as_a_known_one(
    db: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Timing alone cannot tell here (the failure's own write dominates), so count the real
    # argon2id verifications each path makes: both make exactly one.
    checked: list[str] = []
    real = auth.verify_password

    def counting(password: str, stored: str) -> bool:
        checked.append(stored)
        return real(password, stored)

    monkeypatch.setattr(auth, "verify_password", counting)
    for email in (EMAIL, "nobody@acme.example"):
        with pytest.raises(AuthError):
            login(db, email=email, password="wrong", hours=1)
    assert len(checked) == 2 and all(h.startswith("$argon2id$") for h in checked)


async def test_the_login_page_sets_a_secure_cookie_over_https_and_safe_headers(
    stack: Stack,
) -> None:
    form = {"email": "maria@demo.example", "password": "demo"}
    plain = await stack.http.post("/login", data=form)
    assert plain.status_code == 303 and "secure" not in plain.headers["set-cookie"].lower()
    behind_tls = await stack.http.post("/login", data=form, headers={"X-Forwarded-Proto": "https"})
    assert behind_tls.status_code == 303 and "secure" in behind_tls.headers["set-cookie"].lower()
    page = await stack.http.get("/login")
    assert "frame-ancestors 'none'" in page.headers["content-security-policy"]
    assert page.headers["x-frame-options"] == "DENY"
    for _ in range(auth.FREE_FAILURES):
        await stack.http.post("/login", data={**form, "password": "guess"})
    assert (await stack.http.post("/login", data=form)).status_code == 429
