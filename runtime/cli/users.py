"""`autopilot users …`: people, their roles and books, and their API tokens."""

from __future__ import annotations

from typing import Annotated

import typer
from sqlmodel import Session, col, select

from autopilot.runtime.cli.output import console, emit_json, err_console, fail, finish
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
def token(
    user_id: str,
    token_id: Annotated[
        str | None, typer.Argument(help="with --revoke: the id of the token to revoke")
    ] = None,
    label: str = "",
    days: Annotated[
        int | None, typer.Option(help="days until the token expires (default 90)")
    ] = None,
    revoke: Annotated[
        bool, typer.Option("--revoke", help="revoke the token TOKEN_ID (or --all)")
    ] = False,
    revoke_all: Annotated[
        bool, typer.Option("--all", help="with --revoke: every token of the user")
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Issue an API token (shown once; only its hash is stored), good for --days days;
    or revoke one, `token USER --revoke TOKEN_ID`, or all, `token USER --revoke --all`.
    A revoked or expired token is refused (401) from its next request on."""
    from autopilot.runtime.auth.users import (
        DEFAULT_TOKEN_DAYS,
        AuthError,
        issue_token,
        list_tokens,
        revoke_tokens,
        token_id_of,
    )

    db = _db()
    if revoke:
        if (token_id is None) != revoke_all:
            fail("--revoke takes a TOKEN_ID or --all, not both", as_json=as_json)
        try:
            revoked = revoke_tokens(db, user_id=user_id, token_id=token_id)
        except AuthError as err:
            fail(str(err), as_json=as_json)
        if as_json:
            emit_json({"ok": True, "user": user_id, "revoked": revoked})
        else:
            console.print(f"revoked {len(revoked)} token(s) of {user_id} {' '.join(revoked)}")
        finish(0)
    if token_id is not None or revoke_all:
        fail("TOKEN_ID and --all go with --revoke", as_json=as_json)
    try:
        value = issue_token(
            db, user_id=user_id, label=label, days=DEFAULT_TOKEN_DAYS if days is None else days
        )
    except AuthError as err:
        fail(str(err), as_json=as_json)
    info = next(t for t in list_tokens(db, user_id=user_id) if t.id == token_id_of(value))
    if as_json:
        emit_json(
            {
                "ok": True,
                "user": user_id,
                "token": value,
                "id": info.id,
                "expires_at": info.expires_at.isoformat(),
            }
        )
    else:
        console.print(value)  # alone on stdout, for scripts
        err_console.print(f"id {info.id}, expires {info.expires_at:%Y-%m-%d %H:%M} UTC")
    finish(0)


@app.command()
def tokens(user_id: str, as_json: JsonOpt = False) -> None:
    """The user's API tokens by id (never the secret): state, expiry, last use, label."""
    from datetime import UTC, datetime

    from autopilot.runtime.auth.users import list_tokens

    now = datetime.now(UTC)
    rows = [
        {
            "id": t.id,
            "state": t.state(now),
            "label": t.label,
            "created_at": t.created_at.isoformat(),
            "expires_at": t.expires_at.isoformat(),
            "last_used_at": t.last_used_at.isoformat() if t.last_used_at else None,
            "revoked_at": t.revoked_at.isoformat() if t.revoked_at else None,
        }
        for t in list_tokens(_db(), user_id=user_id)
    ]
    if as_json:
        emit_json({"user": user_id, "tokens": rows})
        finish(0)
    for r in rows:
        used = (r["last_used_at"] or "never")[:16]
        console.print(
            f"{r['id']}  {r['state']:<8} expires {r['expires_at'][:16]}  last used {used}  {r['label']}",
            markup=False,
        )
    finish(0)
