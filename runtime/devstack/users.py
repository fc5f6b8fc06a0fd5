"""The demo organisation's people: one per role, CSMs whose ids own the seeded books.
Dev fixtures, apart from the engine's identity code (runtime/auth)."""

from __future__ import annotations

from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from autopilot.runtime.auth.users import _add_user, hash_password
from autopilot.runtime.store.users import User

DEMO_PASSWORD = "demo"
DEMO_USERS = [  # id, name, roles; CSM ids match the seeded accounts' owner_csm (their books)
    ("alice", "Alice Martin", ["csm"]),
    ("bob", "Bob Chen", ["csm"]),
    ("chen", "Chen Wei", ["csm"]),
    ("dana", "Dana Levi", ["csm"]),
    ("emeka", "Emeka Obi", ["csm"]),
    ("maria", "Maria Rossi", ["manager"]),
    ("fiona", "Fiona Park", ["finance"]),
    ("leo", "Leo Varga", ["legal"]),
    ("vera", "Vera Novak", ["vp"]),
    ("audrey", "Audrey Kim", ["auditor"]),
    ("adam", "Adam Admin", ["admin"]),
]


def demo_user_id(org_id: str, handle: str) -> str:
    """User ids are global: the demo org keeps bare handles, other orgs prefix theirs."""
    return handle if org_id == "demo" else f"{org_id}.{handle}"


def seed_demo_users(db: Engine, org_id: str = "demo") -> int:
    with Session(db) as session:
        if session.exec(select(User).where(User.org_id == org_id)).first():
            return 0
    # One hash for all: they share a published password, so a shared salt gives nothing away,
    # and every test stack seeds them (eleven argon2id hashes would add a second to each).
    password_hash = hash_password(DEMO_PASSWORD)
    for handle, name, roles in DEMO_USERS:
        _add_user(
            db,
            user_id=demo_user_id(org_id, handle),
            org_id=org_id,
            email=f"{handle}@{org_id}.example",
            name=name,
            roles=roles,
            password_hash=password_hash,
        )
    return len(DEMO_USERS)
