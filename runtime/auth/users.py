"""Users, API tokens and web sessions. Secrets are stored hashed: passwords with
scrypt, tokens and session ids with SHA-256 (they are long random strings)."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from datetime import UTC, datetime, timedelta

from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from autopilot.runtime.approvals.access import ROLES, Principal
from autopilot.runtime.store.db import transaction
from autopilot.runtime.store.users import ApiToken, Organization, User, WebSession


class AuthError(Exception):
    pass


def hash_password(password: str, *, salt: bytes | None = None) -> str:
    salt = salt or secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=2**14, r=8, p=1)
    return f"scrypt${salt.hex()}${digest.hex()}"


def verify_password(password: str, stored: str) -> bool:
    try:
        _, salt, digest = stored.split("$")
    except ValueError:
        return False
    return hmac.compare_digest(hash_password(password, salt=bytes.fromhex(salt)).split("$")[2], digest)


def _hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def principal(user: User) -> Principal:
    return Principal(user_id=user.id, org_id=user.org_id, roles=frozenset(user.roles), name=user.name)


def add_user(db: Engine, *, user_id: str, org_id: str, email: str, name: str, roles: list[str],
             password: str = "") -> User:
    if bad := set(roles) - set(ROLES):
        raise AuthError(f"unknown role(s) {sorted(bad)}; roles are {', '.join(ROLES)}")
    if not roles:
        raise AuthError("a user needs at least one role")
    with transaction(db) as session:
        if session.get(Organization, org_id) is None:
            session.add(Organization(id=org_id, name=org_id))
        if session.get(User, user_id) is not None or session.exec(select(User).where(User.email == email)).first():
            raise AuthError(f"user {user_id} / {email} exists")
        user = User(id=user_id, org_id=org_id, email=email, name=name, roles=sorted(set(roles)),
                    password_hash=hash_password(password) if password else "", created_at=datetime.now(UTC))
        session.add(user)
    return user


def issue_token(db: Engine, *, user_id: str, label: str = "") -> str:
    """A new API token; only its hash is kept, so it is shown once."""
    token = "cap_" + secrets.token_urlsafe(32)
    with transaction(db) as session:
        if session.get(User, user_id) is None:
            raise AuthError(f"no user {user_id}")
        session.add(ApiToken(token_hash=_hash_secret(token), user_id=user_id, label=label,
                             created_at=datetime.now(UTC)))
    return token


def from_token(session: Session, token: str) -> Principal | None:
    row = session.get(ApiToken, _hash_secret(token))
    if row is None:
        return None
    user = session.get(User, row.user_id)
    return principal(user) if user and user.active else None


def login(db: Engine, *, email: str, password: str, hours: float) -> tuple[str, Principal]:
    with transaction(db) as session:
        user = session.exec(select(User).where(User.email == email)).first()
        if user is None or not user.active or not user.password_hash or not verify_password(password, user.password_hash):
            raise AuthError("wrong email or password")
        sid = secrets.token_urlsafe(32)
        session.add(WebSession(session_hash=_hash_secret(sid), user_id=user.id,
                               expires_at=datetime.now(UTC) + timedelta(hours=hours)))
        return sid, principal(user)


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


DEMO_PASSWORD = "demo"
DEMO_USERS = [  # id, name, roles; CSM ids match the seeded accounts' owner_csm (their books)
    ("alice", "Alice Martin", ["csm"]), ("bob", "Bob Chen", ["csm"]), ("chen", "Chen Wei", ["csm"]),
    ("dana", "Dana Levi", ["csm"]), ("emeka", "Emeka Obi", ["csm"]), ("maria", "Maria Rossi", ["manager"]),
    ("fiona", "Fiona Park", ["finance"]), ("leo", "Leo Varga", ["legal"]), ("vera", "Vera Novak", ["vp"]),
    ("audrey", "Audrey Kim", ["auditor"]), ("adam", "Adam Admin", ["admin"]),
]


def demo_user_id(org_id: str, handle: str) -> str:
    """User ids are global: the demo org keeps bare handles, other orgs prefix theirs."""
    return handle if org_id == "demo" else f"{org_id}.{handle}"


def seed_demo_users(db: Engine, org_id: str = "demo") -> int:
    with Session(db) as session:
        if session.exec(select(User).where(User.org_id == org_id)).first():
            return 0
    for handle, name, roles in DEMO_USERS:
        add_user(db, user_id=demo_user_id(org_id, handle), org_id=org_id, email=f"{handle}@{org_id}.example",
                 name=name, roles=roles, password=DEMO_PASSWORD)
    return len(DEMO_USERS)
