"""Password storage: argon2id for new hashes; hashes from older releases (scrypt, or
argon2id with weaker parameters) still sign in and are upgraded by that sign-in."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from argon2 import PasswordHasher
from sqlalchemy.engine import Engine

from autopilot.runtime.auth.users import AuthError, add_user, login, verify_password
from autopilot.runtime.store.db import make_engine, transaction
from autopilot.runtime.store.users import User

EMAIL = "ann@acme.example"


@pytest.fixture
def db(tmp_path: Path) -> Engine:
    return make_engine(f"sqlite:///{tmp_path / 'auth.db'}")


def legacy_scrypt_hash(password: str) -> str:
    """The format earlier releases stored, computed here independently of the code under test."""
    salt = bytes(range(16))
    digest = hashlib.scrypt(password.encode(), salt=salt, n=2**14, r=8, p=1)
    return f"scrypt${salt.hex()}${digest.hex()}"


def add_ann(db: Engine, password_hash: str) -> None:
    add_user(db, user_id="ann", org_id="acme", email=EMAIL, name="Ann", roles=["csm"])
    with transaction(db) as session:
        user = session.get(User, "ann")
        assert user is not None
        user.password_hash = password_hash
        session.add(user)


def stored_hash(db: Engine) -> str:
    with transaction(db) as session:
        user = session.get(User, "ann")
        assert user is not None
        return user.password_hash


def test_a_new_password_is_stored_as_argon2id(db: Engine) -> None:
    add_user(
        db, user_id="ann", org_id="acme", email=EMAIL, name="Ann", roles=["csm"], password="s3cret"
    )
    assert stored_hash(db).startswith("$argon2id$")
    _, who = login(db, email=EMAIL, password="s3cret", hours=1)
    assert who.user_id == "ann"


def test_a_scrypt_hash_signs_in_and_is_upgraded_to_argon2id(db: Engine) -> None:
    add_ann(db, legacy_scrypt_hash("s3cret"))
    login(db, email=EMAIL, password="s3cret", hours=1)
    upgraded = stored_hash(db)
    assert upgraded.startswith("$argon2id$")
    PasswordHasher().verify(upgraded, "s3cret")  # raises if the new hash is not of this password
    login(db, email=EMAIL, password="s3cret", hours=1)  # and the next sign-in uses it


def test_a_wrong_password_against_a_scrypt_hash_is_refused_and_the_hash_kept(db: Engine) -> None:
    legacy = legacy_scrypt_hash("s3cret")
    add_ann(db, legacy)
    with pytest.raises(AuthError):
        login(db, email=EMAIL, password="s3cret!", hours=1)
    assert stored_hash(db) == legacy


def test_an_argon2id_hash_with_weaker_parameters_is_rehashed_at_sign_in(db: Engine) -> None:
    add_ann(db, PasswordHasher(time_cost=1, memory_cost=8192, parallelism=1).hash("s3cret"))
    login(db, email=EMAIL, password="s3cret", hours=1)
    assert not PasswordHasher().check_needs_rehash(stored_hash(db))


@pytest.mark.parametrize("stored", ["", "scrypt$zz$zz", "scrypt$00", "$argon2id$garbage", "plain"])
def test_an_unreadable_hash_verifies_nothing(stored: str) -> None:
    assert verify_password("s3cret", stored) is False
