"""Users, API tokens and web sessions. Secrets are stored hashed: passwords with
argon2id (OWASP's first choice; a slow, memory-hard hash because people pick guessable
passwords), tokens and session ids with SHA-256 (they are long random strings, so a
fast hash is enough). Hashes from older releases (scrypt) still verify and are
replaced by argon2id at the user's next successful login, the only moment we hold
the plain password. API tokens expire (90 days unless issued for another term) and can
be revoked; an expired or revoked token is refused like an unknown one (401)."""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import bindparam, update
from sqlalchemy.engine import Connection, Engine
from sqlmodel import Session, col, select

from autopilot.runtime.approvals.access import ROLES, Principal
from autopilot.runtime.store.db import transaction
from autopilot.runtime.store.users import (
    ApiToken,
    ApiTokenValidity,
    LoginThrottle,
    Organization,
    User,
    WebSession,
)


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


DEFAULT_TOKEN_DAYS = 90
MAX_TOKEN_DAYS = 3650
# Shown to people to name a token (to list or revoke it): the start of its SHA-256, which
# says nothing of the token itself, and is found for tokens issued before ids existed.
TOKEN_ID_LENGTH = 12


def token_id_of(token: str) -> str:
    return _hash_secret(token)[:TOKEN_ID_LENGTH]


@dataclass(frozen=True)
class TokenInfo:
    id: str
    user_id: str
    label: str
    created_at: datetime
    expires_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None

    def state(self, now: datetime) -> Literal["active", "expired", "revoked"]:
        if self.revoked_at is not None:
            return "revoked"
        return "active" if now < self.expires_at else "expired"


def issue_token(
    db: Engine,
    *,
    user_id: str,
    label: str = "",
    days: int = DEFAULT_TOKEN_DAYS,
    now: datetime | None = None,
) -> str:
    """A new API token, good for `days` days; only its hash is kept, so it is shown once."""
    if not 1 <= days <= MAX_TOKEN_DAYS:
        raise AuthError(f"a token lasts 1 to {MAX_TOKEN_DAYS} days, not {days}")
    token = "cap_" + secrets.token_urlsafe(32)
    now = now or datetime.now(UTC)
    with transaction(db) as session:
        if session.get(User, user_id) is None:
            raise AuthError(f"no user {user_id}")
        token_hash = _hash_secret(token)
        session.add(ApiToken(token_hash=token_hash, user_id=user_id, label=label, created_at=now))
        session.add(ApiTokenValidity(token_hash=token_hash, expires_at=now + timedelta(days=days)))
    return token


def _utc(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=UTC)  # SQLite returns naive UTC


def _info(row: ApiToken, validity: ApiTokenValidity | None) -> TokenInfo:
    created = _utc(row.created_at)
    return TokenInfo(
        id=row.token_hash[:TOKEN_ID_LENGTH],
        user_id=row.user_id,
        label=row.label,
        created_at=created,
        # A token from before expiry existed gets the default lifetime from its creation.
        expires_at=_utc(validity.expires_at)
        if validity
        else created + timedelta(days=DEFAULT_TOKEN_DAYS),
        last_used_at=_utc(row.last_used_at) if row.last_used_at else None,
        revoked_at=_utc(validity.revoked_at) if validity and validity.revoked_at else None,
    )


def list_tokens(db: Engine, *, user_id: str) -> list[TokenInfo]:
    """The user's tokens, oldest first, revoked and expired ones included."""
    with Session(db) as session:
        rows = session.exec(
            select(ApiToken, ApiTokenValidity)
            .join(
                ApiTokenValidity,
                col(ApiTokenValidity.token_hash) == col(ApiToken.token_hash),
                isouter=True,
            )
            .where(ApiToken.user_id == user_id)
            .order_by(col(ApiToken.created_at))
        ).all()
    return [_info(row, validity) for row, validity in rows]


def revoke_tokens(
    db: Engine, *, user_id: str, token_id: str | None = None, now: datetime | None = None
) -> list[str]:
    """Revoke the user's token whose id is `token_id`, or all of them (None); the ids revoked
    now (one already revoked stays as it was). The next request with it answers 401."""
    now = now or datetime.now(UTC)
    with transaction(db) as session:
        if session.get(User, user_id) is None:
            raise AuthError(f"no user {user_id}")
        query = select(ApiToken).where(ApiToken.user_id == user_id)
        if token_id is not None:
            if not re.fullmatch(f"[0-9a-f]{{{TOKEN_ID_LENGTH}}}", token_id.lower()):
                raise AuthError(f"a token id is {TOKEN_ID_LENGTH} hex digits, not {token_id!r}")
            query = query.where(col(ApiToken.token_hash).startswith(token_id.lower()))
        rows = session.exec(query).all()
        if token_id is not None and not rows:
            raise AuthError(f"{user_id} has no token {token_id}")
        revoked = []
        for row in rows:
            validity = session.get(ApiTokenValidity, row.token_hash)
            if validity is None:
                validity = ApiTokenValidity(
                    token_hash=row.token_hash, expires_at=_info(row, None).expires_at
                )
            if validity.revoked_at is None:
                validity.revoked_at = now
                session.add(validity)
                revoked.append(row.token_hash[:TOKEN_ID_LENGTH])
    return revoked


# "Last used" exists to find stale tokens, for which a minute's precision is plenty; a write
# on every request would put each API call behind the database's write lock (SQLite has one).
TOKEN_TOUCH_INTERVAL = timedelta(minutes=1)


# A token's check runs on every API request: one query for the token, its validity and
# its user (columns, not objects), rather than three primary-key loads through the ORM.
_TOKEN_USER = (
    select(  # type: ignore[call-overload]
        ApiToken.created_at,
        ApiToken.last_used_at,
        ApiTokenValidity.expires_at,
        ApiTokenValidity.revoked_at,
        User.id,
        User.org_id,
        User.roles,
        User.name,
        User.active,
    )
    .join(User, col(User.id) == col(ApiToken.user_id))
    .outerjoin(ApiTokenValidity, col(ApiTokenValidity.token_hash) == col(ApiToken.token_hash))
    .where(col(ApiToken.token_hash) == bindparam("token_hash"))
)


def from_token(
    bind: Session | Connection, token: str, *, now: datetime | None = None
) -> Principal | None:
    """The token's user, if the token is neither expired nor revoked and the user is
    active; records the use (see TOKEN_TOUCH_INTERVAL)."""
    token_hash = _hash_secret(token)
    conn = bind.connection() if isinstance(bind, Session) else bind
    row = conn.execute(_TOKEN_USER, {"token_hash": token_hash}).first()
    if row is None:
        return None
    created, last_used, expires, revoked, user_id, org_id, roles, name, active = tuple(row)
    now = now or datetime.now(UTC)
    # A token from before expiry existed gets the default lifetime from its creation.
    expires = _utc(expires) if expires else _utc(created) + timedelta(days=DEFAULT_TOKEN_DAYS)
    if revoked is not None or now >= expires or not active:
        return None
    found = Principal(user_id=user_id, org_id=org_id, roles=frozenset(roles), name=name)
    if last_used is None or now - _utc(last_used) >= TOKEN_TOUCH_INTERVAL:
        conn.execute(
            update(ApiToken).where(col(ApiToken.token_hash) == token_hash).values(last_used_at=now)
        )
        bind.commit()
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
