"""Users, API tokens and web sessions. Secrets are stored hashed: passwords with
argon2id (OWASP's first choice; a slow, memory-hard hash because people pick guessable
passwords), tokens and session ids with SHA-256 (they are long random strings, so a
fast hash is enough). Hashes from older releases (scrypt) still verify and are
replaced by argon2id at the user's next successful login, the only moment we hold
the plain password."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from datetime import UTC, datetime, timedelta

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from autopilot.runtime.approvals.access import ROLES, Principal
from autopilot.runtime.store.db import transaction
from autopilot.runtime.store.users import ApiToken, LoginThrottle, Organization, User, WebSession


class AuthError(Exception):
    pass


# argon2-cffi's defaults are RFC 9106's low-memory profile (argon2id, t=3, 64 MiB, p=4);
# when a later release raises them, check_needs_rehash upgrades stored hashes at login.
_hasher = PasswordHasher()

# Legacy format, verify-only: scrypt$<salt hex>$<digest hex> with N=2^14, r=8, p=1.
_SCRYPT = "scrypt$"


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(password: str, stored: str) -> bool:
    if stored.startswith(_SCRYPT):
        return _verify_scrypt(password, stored)
    try:
        return _hasher.verify(stored, password)
    except (VerificationError, InvalidHashError):  # a wrong password, or a hash we cannot read
        return False


def needs_rehash(stored: str) -> bool:
    """True for a hash that is not argon2id with the current parameters."""
    if stored.startswith(_SCRYPT):
        return True
    try:
        return _hasher.check_needs_rehash(stored)
    except InvalidHashError:
        return True


def _verify_scrypt(password: str, stored: str) -> bool:
    try:
        _, salt, digest = stored.split("$")
        expected = bytes.fromhex(digest)
        actual = hashlib.scrypt(password.encode(), salt=bytes.fromhex(salt), n=2**14, r=8, p=1)
    except ValueError:  # not three fields, or not hex
        return False
    return hmac.compare_digest(actual, expected)


def _hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def principal(user: User) -> Principal:
    return Principal(
        user_id=user.id, org_id=user.org_id, roles=frozenset(user.roles), name=user.name
    )


def add_user(
    db: Engine,
    *,
    user_id: str,
    org_id: str,
    email: str,
    name: str,
    roles: list[str],
    password: str = "",
) -> User:
    return _add_user(
        db,
        user_id=user_id,
        org_id=org_id,
        email=email,
        name=name,
        roles=roles,
        password_hash=hash_password(password) if password else "",
    )


def _add_user(
    db: Engine,
    *,
    user_id: str,
    org_id: str,
    email: str,
    name: str,
    roles: list[str],
    password_hash: str,
) -> User:
    if bad := set(roles) - set(ROLES):
        raise AuthError(f"unknown role(s) {sorted(bad)}; roles are {', '.join(ROLES)}")
    if not roles:
        raise AuthError("a user needs at least one role")
    with transaction(db) as session:
        if session.get(Organization, org_id) is None:
            session.add(Organization(id=org_id, name=org_id))
        if (
            session.get(User, user_id) is not None
            or session.exec(select(User).where(User.email == email)).first()
        ):
            raise AuthError(f"user {user_id} / {email} exists")
        user = User(
            id=user_id,
            org_id=org_id,
            email=email,
            name=name,
            roles=sorted(set(roles)),
            password_hash=password_hash,
            created_at=datetime.now(UTC),
        )
        session.add(user)
    return user


def issue_token(db: Engine, *, user_id: str, label: str = "") -> str:
    """A new API token; only its hash is kept, so it is shown once."""
    token = "cap_" + secrets.token_urlsafe(32)
    with transaction(db) as session:
        if session.get(User, user_id) is None:
            raise AuthError(f"no user {user_id}")
        session.add(
            ApiToken(
                token_hash=_hash_secret(token),
                user_id=user_id,
                label=label,
                created_at=datetime.now(UTC),
            )
        )
    return token


# "Last used" exists to find stale tokens, for which a minute's precision is plenty; a write
# on every request would put each API call behind the database's write lock (SQLite has one).
TOKEN_TOUCH_INTERVAL = timedelta(minutes=1)


def from_token(session: Session, token: str, *, now: datetime | None = None) -> Principal | None:
    """The token's user, if both are valid; records the use (see TOKEN_TOUCH_INTERVAL)."""
    row = session.get(ApiToken, _hash_secret(token))
    if row is None:
        return None
    user = session.get(User, row.user_id)
    if user is None or not user.active:
        return None
    found = principal(user)
    now = now or datetime.now(UTC)
    last = row.last_used_at
    if last is not None and last.tzinfo is None:  # SQLite returns naive datetimes; we store UTC
        last = last.replace(tzinfo=UTC)
    if last is None or now - last >= TOKEN_TOUCH_INTERVAL:
        row.last_used_at = now
        session.add(row)
        session.commit()
    return found


FREE_FAILURES = 5  # wrong passwords before the lockout starts
LOCKOUT = timedelta(seconds=30)  # doubles with every further failure, up to a day
_DUMMY_HASH = _hasher.hash(secrets.token_urlsafe(16))  # verified for unknown emails: same timing


class LockedOut(AuthError):
    def __init__(self, until: datetime) -> None:
        self.until = until
        super().__init__("too many failed sign-ins: try again later")


def login(db: Engine, *, email: str, password: str, hours: float) -> tuple[str, Principal]:
    """A web session for the right email and password. Unknown emails cost the same
    hash check as known ones (no enumeration by timing); repeated failures lock the
    email out with back-off (LockedOut), whatever the password."""
    now = datetime.now(UTC)
    with transaction(db) as session:
        throttle = session.get(LoginThrottle, email) or LoginThrottle(email=email)
        until = throttle.locked_until
        if until is not None and (until if until.tzinfo else until.replace(tzinfo=UTC)) > now:
            raise LockedOut(until)
        user = session.exec(select(User).where(User.email == email)).first()
        usable = user is not None and user.active and bool(user.password_hash)
        ok = (
            verify_password(password, user.password_hash if usable and user else _DUMMY_HASH)
            and usable
        )
    if not ok or user is None:
        _failed(db, email, now)
        raise AuthError("wrong email or password")
    with transaction(db) as session:
        if (row := session.get(LoginThrottle, email)) is not None:
            session.delete(row)
        if user.password_hash and needs_rehash(user.password_hash):
            user.password_hash = hash_password(password)
            session.add(user)
        sid = secrets.token_urlsafe(32)
        session.add(
            WebSession(
                session_hash=_hash_secret(sid),
                user_id=user.id,
                expires_at=now + timedelta(hours=hours),
            )
        )
        return sid, principal(user)


def _failed(db: Engine, email: str, now: datetime) -> None:
    with transaction(db) as session:
        row = session.get(LoginThrottle, email) or LoginThrottle(email=email)
        row.failures += 1
        if row.failures >= FREE_FAILURES:
            wait = min(LOCKOUT * 2 ** (row.failures - FREE_FAILURES), timedelta(days=1))
            row.locked_until = now + wait
        session.add(row)


def from_session(session: Session, sid: str) -> Principal | None:
    row = session.get(WebSession, _hash_secret(sid))
    if row is None:
        return None
    expires = row.expires_at if row.expires_at.tzinfo else row.expires_at.replace(tzinfo=UTC)
    if expires < datetime.now(UTC):
        return None
    user = session.get(User, row.user_id)
    return principal(user) if user and user.active else None


def logout(db: Engine, sid: str) -> None:
    with transaction(db) as session:
        row = session.get(WebSession, _hash_secret(sid))
        if row is not None:
            session.delete(row)
