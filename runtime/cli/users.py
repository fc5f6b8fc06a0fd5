"""`autopilot users …`: people, their roles and books, and their API tokens."""

from __future__ import annotations

from typing import Annotated

import typer
from sqlmodel import Session, col, select

from autopilot.runtime.cli.output import console, emit_json, fail, finish
from autopilot.runtime.config import get_settings

app = typer.Typer(no_args_is_help=True, help="Users, roles and API tokens.")
JsonOpt = Annotated[bool, typer.Option("--json", help="print one JSON object on stdout")]


def _db():  # type: ignore[no-untyped-def]
    from autopilot.runtime.store.db import make_engine

    return make_engine(get_settings().db_url)


@app.command()
def add(
    user_id: str,
    email: Annotated[str, typer.Option()],
    name: Annotated[str, typer.Option()],
    role: Annotated[
        list[str], typer.Option(help="csm, manager, finance, legal, vp, admin, auditor")
    ],
    org: str = "demo",
    password: Annotated[str, typer.Option(prompt=True, hide_input=True)] = "",
    as_json: JsonOpt = False,
) -> None:
    """Add a user; a CSM's book is the accounts whose owner_csm is USER_ID."""
    from autopilot.runtime.auth.users import AuthError, add_user

    try:
        user = add_user(
            _db(),
            user_id=user_id,
            org_id=org,
            email=email,
            name=name,
            roles=role,
            password=password,
        )
    except AuthError as err:
        fail(str(err), as_json=as_json)
    out = {"ok": True, "id": user.id, "org": user.org_id, "roles": user.roles}
    emit_json(out) if as_json else console.print(
        f"added {user.id} ({', '.join(user.roles)}) to {user.org_id}"
    )
    finish(0)


@app.command("list")
def list_users(org: str | None = None, as_json: JsonOpt = False) -> None:
    from autopilot.runtime.store.users import User

    with Session(_db()) as session:
        q = select(User).order_by(col(User.org_id), col(User.id))
        users = session.exec(q.where(User.org_id == org) if org else q).all()
    rows = [
        {
            "id": u.id,
            "org": u.org_id,
            "email": u.email,
            "name": u.name,
            "roles": u.roles,
            "active": u.active,
        }
        for u in users
    ]
    if as_json:
        emit_json({"users": rows})
        finish(0)
    for r in rows:
        console.print(f"{r['org']:<10} {r['id']:<16} {r['email']:<28} {', '.join(r['roles'])}")
    finish(0)


@app.command()
def token(user_id: str, label: str = "", as_json: JsonOpt = False) -> None:
    """Issue an API token (shown once; only its hash is stored)."""
    from autopilot.runtime.auth.users import AuthError, issue_token

    try:
        value = issue_token(_db(), user_id=user_id, label=label)
    except AuthError as err:
        fail(str(err), as_json=as_json)
    emit_json({"ok": True, "user": user_id, "token": value}) if as_json else console.print(value)
    finish(0)
